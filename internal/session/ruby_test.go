package session

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/testenv"
)

// TestRubySession: the Ruby kernel follows the same protocol: local
// variables, methods, classes and required libraries persist, the value
// of the cell is its inspect, an exception has its backtrace without the
// kernel's frames, exit ends the cell and not the session, a busy loop is
// interrupted at its deadline and the session goes on.
func TestRubySession(t *testing.T) {
	if _, err := os.Stat("/usr/bin/ruby"); err != nil {
		testenv.MissingFile(t, "/usr/bin/ruby")
	}
	m := newManager(t, Config{})
	s, err := m.Create(t.Context(), "me", &run.SessionSpec{Runtime: "ruby"})
	if err != nil {
		t.Fatal(err)
	}
	if info := s.Info(); info.Runtime != "ruby" || !strings.HasPrefix(info.Version, "3.") {
		t.Errorf("info %+v", info)
	}
	steps := []struct {
		code, status, result, stdout, errName string
	}{
		{"require 'set'\nn = 41\ndef twice(a) = 2 * a\nclass Box; def initialize(v) = @v = v; end\nnil", "ok", "", "", ""},
		{"File.write('f.txt', 'kept'); puts 'out'; n + 1", "ok", "42", "out\n", ""},
		{"[twice(n), File.read('f.txt'), Set[1].size]", "ok", `[82, "kept", 1]`, "", ""},
		{"Box.new(:x).inspect.start_with?('#<Box')", "ok", "true", "", ""},
		{"_", "ok", "true", "", ""},
		{"{a: 'b'}", "ok", `{:a=>"b"}`, "", ""},
		{"print 'no newline'", "ok", "", "no newline", ""},
		{"def boom = Integer('x')\nboom", "error", "", "", "ArgumentError"},
		{"1 +", "error", "", "", "SyntaxError"},
		{"exit 3", "error", "", "", "SystemExit"},
		{"n", "ok", "41", "", ""},
	}
	for _, st := range steps {
		res := exec(t, s, st.code)
		name := ""
		if res.Error != nil {
			name = res.Error.Name
		}
		if string(res.Status) != st.status || res.Result["text/plain"] != st.result || string(res.Stdout) != st.stdout || name != st.errName || res.State != run.SessionIdle {
			t.Errorf("cell %q: status %s result %q stdout %q error %+v state %s stderr %s", st.code, res.Status, res.Result["text/plain"], res.Stdout, res.Error, res.State, res.Stderr)
		}
	}
	res := exec(t, s, "def inner = raise(KeyError, 'gone')\ndef outer = inner\nouter")
	want := "<cell-12>:1:in `inner': gone (KeyError)\n\tfrom <cell-12>:2:in `outer'\n\tfrom <cell-12>:3:in `<main>'"
	if res.Error == nil || res.Error.Name != "KeyError" || res.Error.Value != "gone" || res.Error.Traceback != want {
		t.Errorf("error %+v, want the traceback\n%s", res.Error, want)
	}
	res, err = s.Exec(t.Context(), run.CellRequest{Code: "loop { }", Timeout: limits.Duration(300 * time.Millisecond)}, run.CellStream{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != run.StatusTimeout || res.State != run.SessionIdle {
		t.Fatalf("busy loop: status %s state %s reason %q", res.Status, res.State, res.Reason)
	}
	if r := exec(t, s, "twice(n)"); r.Result["text/plain"] != "82" {
		t.Errorf("after the interrupt: %+v", r)
	}
}

// TestRubyInterrupt: an interrupt (Ctrl-C in a notebook) is an Interrupt
// exception in the running cell, answered as its error; the session goes
// on with its state.
func TestRubyInterrupt(t *testing.T) {
	if _, err := os.Stat("/usr/bin/ruby"); err != nil {
		testenv.MissingFile(t, "/usr/bin/ruby")
	}
	m := newManager(t, Config{})
	s, err := m.Create(t.Context(), "me", &run.SessionSpec{Runtime: "ruby"})
	if err != nil {
		t.Fatal(err)
	}
	exec(t, s, "kept = 7")
	res := interruptRunning(t, s, "puts 'in'\nsleep 60")
	if res.Status != run.StatusError || res.Error == nil || res.Error.Name != "Interrupt" || res.State != run.SessionIdle || string(res.Stdout) != "in\n" {
		t.Fatalf("interrupted cell: %+v", res)
	}
	if r := exec(t, s, "kept * 6"); r.Result["text/plain"] != "42" {
		t.Errorf("after the interrupt: %+v", r)
	}
}
