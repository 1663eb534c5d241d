package cli

import "strings"

// The REPL's grouping of input lines into cells, as Python's own REPL
// does it: a line that leaves a statement open gets a "... " prompt and
// the next line joins it. The scanner knows just enough Python to tell:
// string literals (single and triple quoted, any prefix, backslash
// escapes), comments, brackets and backslash line continuations. It does
// not parse: a line it cannot make sense of ends the cell, and the kernel
// reports the syntax error. Known gap: a single-quoted f-string whose
// replacement field spans lines (Python 3.12) is taken as unterminated.

// pyScan is what the scanner learned about some Python source.
type pyScan struct {
	// depth counts the brackets still open.
	depth int
	// inString: a triple-quoted string is open, or a single-quoted one
	// continued by a backslash at the end of the last line.
	inString bool
	// backslash: the last line ends with a line continuation.
	backslash bool
	// colon: the last logical line ends with ':' (it opens a block).
	colon bool
	// code: there is something besides blanks and comments.
	code bool
	// broken: a syntax error the kernel will report (an unterminated
	// single-quoted string, a closing bracket with none open).
	broken bool
}

// open reports whether the source cannot be a whole statement yet.
func (s pyScan) open() bool {
	return !s.broken && (s.depth > 0 || s.inString || s.backslash || s.colon)
}

// scanPython scans src, a whole number of lines ("\n"-terminated, the
// last one may be unterminated).
func scanPython(src string) pyScan {
	var (
		st    pyScan
		last  byte // the last significant byte of the current logical line
		quote byte // the open string's quote, or 0
		tri   bool // the open string is triple-quoted
	)
	for i := 0; i < len(src); i++ {
		c := src[i]
		if quote != 0 {
			switch {
			case c == '\\':
				i++ // the escaped byte, a newline included, is the string's
			case c == '\n' && !tri:
				// A single-quoted string ends at the line: unterminated.
				st.broken = true
				quote = 0
				last = 0
			case c == quote && !tri:
				quote = 0
			case c == quote && strings.HasPrefix(src[i:], strings.Repeat(string(quote), 3)):
				quote, tri = 0, false
				i += 2
			}
			continue
		}
		switch c {
		case '#':
			for i+1 < len(src) && src[i+1] != '\n' {
				i++
			}
		case '\'', '"':
			st.code, last = true, c
			quote = c
			if strings.HasPrefix(src[i:], strings.Repeat(string(c), 3)) {
				tri = true
				i += 2
			}
		case '\\':
			switch {
			case i+1 < len(src) && src[i+1] == '\n':
				// A line continuation: the logical line goes on.
				st.backslash = i+2 == len(src)
				i++
				continue
			case i+1 == len(src):
				st.backslash = true
				continue
			}
			st.code, last = true, c
		case '(', '[', '{':
			st.code, last = true, c
			st.depth++
		case ')', ']', '}':
			st.code, last = true, c
			if st.depth == 0 {
				st.broken = true
				continue
			}
			st.depth--
		case '\n':
			// A blank or comment line leaves colon as it was.
			if st.depth == 0 && last != 0 {
				st.colon = last == ':'
				last = 0
			}
		case ' ', '\t', '\r', '\f', '\v':
		default:
			st.code, last = true, c
		}
	}
	st.inString = quote != 0
	if st.depth == 0 && quote == 0 && last != 0 {
		// An unterminated last line.
		st.colon = last == ':'
	}
	return st
}

// compoundKeywords start a statement that may take more lines than its
// first even when that one is complete ("if x: y = 1" may get an else).
var compoundKeywords = map[string]bool{
	"if": true, "for": true, "while": true, "def": true, "class": true,
	"with": true, "try": true, "async": true,
}

// clauseKeywords go on a compound statement at its own indentation.
var clauseKeywords = map[string]bool{"else": true, "elif": true, "except": true, "finally": true}

// firstWord is the identifier a line starts with (after its indentation),
// or "@" for a decorator.
func firstWord(line string) string {
	s := strings.TrimLeft(line, " \t")
	if strings.HasPrefix(s, "@") {
		return "@"
	}
	n := 0
	for n < len(s) && (s[n] == '_' || s[n] >= 'a' && s[n] <= 'z' || s[n] >= 'A' && s[n] <= 'Z' || s[n] >= '0' && s[n] <= '9') {
		n++
	}
	return s[:n]
}

// cellSplitter groups input lines into cells. A simple statement is a
// cell as soon as it is complete; a compound one (a block: def, if, for,
// a decorator, ...) goes on until a blank line, as in Python's REPL, or
// until an unindented line that is not one of its clauses (else, except,
// ...), which Python's REPL would refuse and which here starts the next
// cell: piped scripts need no blank line after each block.
type cellSplitter struct {
	lines []string
	block bool
}

// pending reports whether lines are waiting for more (the prompt is then
// "... ").
func (c *cellSplitter) pending() bool { return len(c.lines) > 0 }

// reset drops the lines waiting (Ctrl-C at the prompt).
func (c *cellSplitter) reset() { c.lines, c.block = nil, false }

// line takes one input line (without its newline) and returns the cells
// it completes, in order: none, one, or two when an unindented line both
// ends a block and is a whole statement itself.
func (c *cellSplitter) line(l string) []string {
	blank := strings.Trim(l, " \t\r\f\v") == ""
	if len(c.lines) == 0 {
		if blank {
			return nil
		}
		c.lines = []string{l}
		c.block = compoundKeywords[firstWord(l)] || firstWord(l) == "@"
		return c.complete()
	}
	st := scanPython(c.source())
	if c.block && st.depth == 0 && !st.inString && !st.backslash {
		prev := c.lines[len(c.lines)-1]
		switch {
		case blank:
			// Also after a bare "if x:": the kernel says what is
			// missing, as Python's REPL does.
			return []string{c.take()}
		case !st.colon && l[0] != ' ' && l[0] != '\t' && l[0] != '#' && !clauseKeywords[firstWord(l)] && firstWord(prev) != "@":
			cell := c.take()
			return append([]string{cell}, c.line(l)...)
		}
	}
	c.lines = append(c.lines, l)
	return c.complete()
}

// complete returns the cell if the lines make a whole statement.
func (c *cellSplitter) complete() []string {
	st := scanPython(c.source())
	switch {
	case st.broken:
		// Python's REPL reports a syntax error at once.
		return []string{c.take()}
	case !st.code && !st.open():
		// Only comments: nothing to run.
		c.reset()
		return nil
	case st.colon:
		c.block = true
	}
	if st.open() || c.block {
		return nil
	}
	return []string{c.take()}
}

// flush returns what is left at the end of the input, as a last cell
// (the kernel reports it if it is incomplete), or nothing.
func (c *cellSplitter) flush() []string {
	if len(c.lines) == 0 || !scanPython(c.source()).code {
		c.reset()
		return nil
	}
	return []string{c.take()}
}

func (c *cellSplitter) source() string { return strings.Join(c.lines, "\n") + "\n" }

func (c *cellSplitter) take() string {
	s := c.source()
	c.reset()
	return s
}
