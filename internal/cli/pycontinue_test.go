package cli

import (
	"fmt"
	"strings"
	"testing"
)

func TestScanPython(t *testing.T) {
	for _, tc := range []struct {
		src  string
		open bool
		code bool
	}{
		{"x = 1\n", false, true},
		{"\n", false, false},
		{"# just a comment\n", false, false},
		{"   \t\n", false, false},
		// Blocks.
		{"def f(a):\n", true, true},
		{"if x:  # a comment after the colon\n", true, true},
		{"class A(B):\n", true, true},
		{"match command:\n", true, true},
		{"def f(a):\n    return a\n", false, true},
		{"def f(a):\n    # only a comment so far\n", true, true},
		{"def f(a):\n\n", true, true},
		{"if x: y = 1\n", false, true},
		{"d = {'a': 1}\n", false, true},
		{"x[1:\n", true, true},
		// Brackets.
		{"f(1,\n", true, true},
		{"f(1,\n  2)\n", false, true},
		{"x = [\n  {\n", true, true},
		{"x = [\n  {}]\n", false, true},
		{"f(')'\n", true, true},
		{"f(1)  # (\n", false, true},
		{"f(1))\n", false, true},
		// Backslash continuations.
		{"x = 1 + \\\n", true, true},
		{"x = 1 + \\\n  2\n", false, true},
		{"x = 1  # not a continuation \\\n", false, true},
		{"x = 1 + \\", true, true},
		// Strings.
		{"s = '''\n", true, true},
		{"s = '''a\nb'''\n", false, true},
		{`s = """it's "quoted" """` + "\n", false, true},
		{`s = """a \""" b` + "\n", true, true},
		{`s = 'a # not a comment'` + "\n", false, true},
		{`s = "(" + '['` + "\n", false, true},
		{`s = 'it\'s'` + "\n", false, true},
		{`s = r'\'' + "x"` + "\n", false, true},
		{`s = ''` + "\n", false, true},
		{`s = ''''''` + "\n", false, true},
		{`s = b"\x00" + f"{x}"` + "\n", false, true},
		{"s = 'continued \\\n", true, true},
		{"s = 'continued \\\nhere'\n", false, true},
		{"s = 'unterminated\n", false, true},
		{"s = '''a ' b \" c\n", true, true},
		{"x = f'''{\n", true, true},
		{"if s == ':':\n", true, true},
		{"s = 'ends with a colon:'\n", false, true},
	} {
		st := scanPython(tc.src)
		if st.open() != tc.open || st.code != tc.code {
			t.Errorf("scanPython(%q) = %+v: open %v code %v, want open %v code %v", tc.src, st, st.open(), st.code, tc.open, tc.code)
		}
	}
}

// TestCellSplitter feeds lines as the REPL reads them and checks the cells
// they make and the prompt after each line.
func TestCellSplitter(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lines []string
		// cells are the cells made, in order; prompts the prompt after
		// each line ('>' for ">>> ", '.' for "... ").
		cells   []string
		prompts string
	}{
		{"simple", []string{"x = 5", "x"}, []string{"x = 5\n", "x\n"}, ">>"},
		{"blank and comment lines", []string{"", "# hi", "  ", "x"}, []string{"x\n"}, ">>>>"},
		{"def then blank", []string{"def f(a):", "    return a * 2", "", "f(5)"}, []string{"def f(a):\n    return a * 2\n", "f(5)\n"}, "..>>"},
		{"blank lines inside brackets", []string{"x = [", "", "1]"}, []string{"x = [\n\n1]\n"}, "..>"},
		{"blank lines inside a triple-quoted string", []string{"def f():", "    '''doc", "", "    '''", "    return 1", ""}, []string{"def f():\n    '''doc\n\n    '''\n    return 1\n"}, ".....>"},
		{"brackets end the cell without a blank line", []string{"print(1,", "      2)"}, []string{"print(1,\n      2)\n"}, ".>"},
		{"backslash", []string{"x = 1 + \\", "    2"}, []string{"x = 1 + \\\n    2\n"}, ".>"},
		{"if else", []string{"if x:", "    y = 1", "else:", "    y = 2", ""}, []string{"if x:\n    y = 1\nelse:\n    y = 2\n"}, "....>"},
		{"try except finally", []string{"try:", "    1/0", "except ZeroDivisionError:", "    pass", "finally:", "    print('f')", ""}, []string{"try:\n    1/0\nexcept ZeroDivisionError:\n    pass\nfinally:\n    print('f')\n"}, "......>"},
		{"one-line compound waits for an else", []string{"if x: y = 1", "else: y = 2", ""}, []string{"if x: y = 1\nelse: y = 2\n"}, "..>"},
		{"an unindented line ends a block and is a cell", []string{"def f():", "    return 1", "print(f())"}, []string{"def f():\n    return 1\n", "print(f())\n"}, "..>"},
		{"an unindented block after a block", []string{"for i in range(2):", "    pass", "while False:", "    pass", ""}, []string{"for i in range(2):\n    pass\n", "while False:\n    pass\n"}, "....>"},
		{"decorator", []string{"@dec", "def f():", "    pass", ""}, []string{"@dec\ndef f():\n    pass\n"}, "...>"},
		{"decorator after a block", []string{"class A:", "    pass", "@dec", "def g(): pass", ""}, []string{"class A:\n    pass\n", "@dec\ndef g(): pass\n"}, "....>"},
		{"comment at column 0 inside a block", []string{"def f():", "# note", "    return 1", ""}, []string{"def f():\n# note\n    return 1\n"}, "...>"},
		{"bare block header then blank", []string{"if x:", ""}, []string{"if x:\n"}, ".>"},
		{"syntax error at once", []string{"s = 'oops", "x"}, []string{"s = 'oops\n", "x\n"}, ">>"},
		{"syntax error inside a block at once", []string{"def f():", "    s = 'oops"}, []string{"def f():\n    s = 'oops\n"}, ".>"},
		{"nested blocks", []string{"def f(xs):", "    for x in xs:", "        if x:", "            return x", "    return None", "", "f([0, 3])"}, []string{"def f(xs):\n    for x in xs:\n        if x:\n            return x\n    return None\n", "f([0, 3])\n"}, ".....>>"},
		{"async def", []string{"async def f():", "    pass", ""}, []string{"async def f():\n    pass\n"}, "..>"},
		{"with", []string{"with open('f') as f:", "    f.read()", ""}, []string{"with open('f') as f:\n    f.read()\n"}, "..>"},
		{"match", []string{"match p:", "    case 1:", "        pass", ""}, []string{"match p:\n    case 1:\n        pass\n"}, "...>"},
		{"names that start like keywords", []string{"iffy = 1", "define = 2"}, []string{"iffy = 1\n", "define = 2\n"}, ">>"},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			var c cellSplitter
			var cells []string
			var prompts strings.Builder
			for _, l := range tc.lines {
				cells = append(cells, c.line(l)...)
				if c.pending() {
					prompts.WriteByte('.')
				} else {
					prompts.WriteByte('>')
				}
			}
			cells = append(cells, c.flush()...)
			if fmt.Sprintf("%q", cells) != fmt.Sprintf("%q", tc.cells) || prompts.String() != tc.prompts {
				t.Errorf("lines %q:\ncells   %q, prompts %s\nwant    %q, prompts %s", tc.lines, cells, prompts.String(), tc.cells, tc.prompts)
			}
		})
	}
}

func TestCellSplitterFlushAndReset(t *testing.T) {
	var c cellSplitter
	c.line("def f():")
	c.line("    return 1")
	if got := c.flush(); len(got) != 1 || got[0] != "def f():\n    return 1\n" {
		t.Errorf("flush at EOF: %q", got)
	}
	c.line("x = (1,")
	c.reset()
	if c.pending() {
		t.Error("pending after reset")
	}
	if got := c.line("y = 2"); len(got) != 1 || got[0] != "y = 2\n" {
		t.Errorf("after reset: %q", got)
	}
	c.line("# only a comment")
	if got := c.flush(); got != nil {
		t.Errorf("flush of a comment: %q", got)
	}
}

// FuzzCellSplitter: any input is split without a panic, and every line
// with code reaches a cell, in order.
func FuzzCellSplitter(f *testing.F) {
	for _, s := range []string{
		"x = 5\ndef f(a):\n    return a * 2\n\nf(x)\n",
		"s = '''\n(\n'''\n",
		"f(1,\\\n2)\n",
		"if x:\n  y\nelse:\n  z\n",
		"'\\\n'\n)\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		var c cellSplitter
		var cells []string
		lines := strings.Split(in, "\n")
		for _, l := range lines {
			cells = append(cells, c.line(l)...)
		}
		cells = append(cells, c.flush()...)
		all := strings.Join(cells, "")
		pos := 0
		for _, l := range lines {
			if !scanPython(l + "\n").code {
				continue
			}
			i := strings.Index(all[pos:], l)
			if i < 0 {
				t.Fatalf("line %q of %q is in no cell (cells %q)", l, in, cells)
			}
			pos += i + len(l)
		}
	})
}
