package run

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// Caps on text a sandbox or a client chose, wherever it is echoed: a log
// line, a Reason, an Error, an error message. Such text can be as long as
// whatever carried it (an answer line of 32 MiB, a request body), and an
// echo of it whole would copy it into the daemon's log and into every
// response that repeats the message.
const (
	// MaxName caps a name quoted in a message: a file name, a JSON field
	// or type, a module's import. A real one is far shorter; this keeps
	// enough to recognise it.
	MaxName = 256
	// MaxMessage caps a reason or an error text that carries such text
	// (an error relayed from inside the sandbox, a decoder's message): a
	// sentence or two, with room for a name in it.
	MaxMessage = 1024
)

// Clip returns s cut to at most max bytes at a rune boundary, followed by a
// marker that gives the length of s ("… (1048576 bytes in all)") when
// anything was cut. Invalid UTF-8 in what is kept becomes U+FFFD, so the
// result is always valid UTF-8. Clip neither quotes nor escapes: log
// handlers and JSON escape control characters themselves; a name spliced
// into a one-line message goes through Quote instead.
func Clip(s string, max int) string {
	max = limit(max)
	if len(s) <= max && utf8.ValidString(s) {
		return s
	}
	// Only a prefix is looked at: s may be megabytes long.
	head := s[:min(len(s), max+utf8.UTFMax)]
	if !utf8.ValidString(head) {
		head = strings.ToValidUTF8(head, "\uFFFD")
	}
	if len(head) <= max && len(s) <= max+utf8.UTFMax {
		// Nothing cut: only invalid bytes replaced.
		return head
	}
	return cutRunes(head, max) + marker(len(s))
}

// Quote returns s quoted as %q does, its escapes included, at most max
// bytes long: the contents are cut at a rune (or escape) boundary and the
// marker of Clip follows the closing quote when anything was cut. It is
// for a name the sandbox or the client chose, spliced into a one-line
// message: newlines and control characters come out escaped.
func Quote(s string, max int) string {
	max = limit(max)
	if len(s) <= max/4 {
		// Every escape is at most 4 bytes per byte of s (\x00): short
		// names need no counting.
		if q := strconv.Quote(s); len(q) <= max {
			return q
		}
	}
	b := make([]byte, 0, max)
	b = append(b, '"')
	for i := 0; i < len(s); {
		_, size := utf8.DecodeRuneInString(s[i:])
		q := strconv.Quote(s[i : i+size])
		q = q[1 : len(q)-1]
		if len(b)+len(q)+1 > max {
			return string(append(b, '"')) + marker(len(s))
		}
		b = append(b, q...)
		i += size
	}
	return string(append(b, '"'))
}

// ClipError returns err with its message clipped to max bytes (Clip); it
// unwraps to err, so errors.Is and errors.As see through it.
func ClipError(err error, max int) error {
	if err == nil {
		return nil
	}
	return &clippedError{err: err, max: max}
}

type clippedError struct {
	err error
	max int
}

func (e *clippedError) Error() string { return Clip(e.err.Error(), e.max) }
func (e *clippedError) Unwrap() error { return e.err }

// cutRunes cuts valid UTF-8 s to at most max bytes at a rune boundary.
func cutRunes(s string, max int) string {
	if len(s) <= max {
		return s
	}
	for max > 0 && !utf8.RuneStart(s[max]) {
		max--
	}
	return s[:max]
}

func marker(n int) string {
	return "… (" + strconv.Itoa(n) + " bytes in all)"
}

// limit keeps a cap sane: room for at least a quoted empty string.
func limit(n int) int {
	if n < 2 {
		return 2
	}
	return n
}
