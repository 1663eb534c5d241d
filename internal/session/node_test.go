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

// nodeSession starts a JavaScript session.
func nodeSession(t *testing.T) *Session {
	t.Helper()
	if _, err := os.Stat("/usr/bin/node"); err != nil {
		testenv.MissingFile(t, "/usr/bin/node")
	}
	m := newManager(t, Config{})
	s, err := m.Create(t.Context(), "me", &run.SessionSpec{Runtime: "javascript", Limits: limits.Limits{Memory: 512 * limits.MiB}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestNodeSession: the JavaScript kernel follows the same protocol:
// declarations and modules persist, the completion value is the result,
// an exception has its stack without the kernel's frames, a busy loop is
// interrupted at its deadline and the session goes on.
func TestNodeSession(t *testing.T) {
	s := nodeSession(t)
	steps := []struct {
		code, status, result, stdout string
	}{
		{"const fs = require('fs'); let n = 41; function twice(a) { return 2 * a }", "ok", "", ""},
		{"fs.writeFileSync('f.txt', 'kept'); console.log('out'); n + 1", "ok", "42", "out\n"},
		{"twice(n) + fs.readFileSync('f.txt', 'utf8')", "ok", "'82kept'", ""},
		{"new Promise(r => setTimeout(() => r(n), 10))", "ok", "41", ""},
		{"null.x", "error", "", ""},
	}
	for _, st := range steps {
		res := exec(t, s, st.code)
		if string(res.Status) != st.status || res.Result["text/plain"] != st.result || string(res.Stdout) != st.stdout {
			t.Errorf("cell %q: status %s result %q stdout %q error %+v stderr %s", st.code, res.Status, res.Result["text/plain"], res.Stdout, res.Error, res.Stderr)
		}
	}
	if r := exec(t, s, "display({'image/png': 'iVBORw0KGgo='}, [1, 2]); 3"); len(r.Display) != 2 || r.Display[0]["image/png"] != "iVBORw0KGgo=" || r.Display[1]["text/plain"] != "[ 1, 2 ]" || r.Result["text/plain"] != "3" {
		t.Errorf("displays %v result %v", r.Display, r.Result)
	}
	res := exec(t, s, "undefined.y")
	if res.Error == nil || res.Error.Name != "TypeError" || !strings.Contains(res.Error.Traceback, "<cell-7>") || strings.Contains(res.Error.Traceback, "node:vm") {
		t.Errorf("error %+v", res.Error)
	}
	res, err := s.Exec(t.Context(), run.CellRequest{Code: "while (true) {}", Timeout: limits.Duration(300 * time.Millisecond)}, run.CellStream{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != run.StatusTimeout || res.State != run.SessionIdle {
		t.Fatalf("busy loop: status %s state %s reason %q", res.Status, res.State, res.Reason)
	}
	if r := exec(t, s, "n"); r.Result["text/plain"] != "41" {
		t.Errorf("after the interrupt: %+v", r)
	}
	if s.Info().Runtime != "javascript" || !strings.HasPrefix(s.Info().Version, "") {
		t.Errorf("info %+v", s.Info())
	}
}

// TestNodeTopLevelAwait: a cell may `await` at its top level, as in
// node's REPL: the trailing expression is its result, its declarations
// outlive it, a rejection is an error result, and an interrupt ends a
// wait that never settles with the session going on.
func TestNodeTopLevelAwait(t *testing.T) {
	s := nodeSession(t)
	steps := []struct {
		code, status, result, errName string
	}{
		{"const r = await Promise.resolve(41); r + 1", "ok", "42", ""},
		{"r", "ok", "41", ""},
		{"var v = await new Promise(res => setTimeout(() => res(2), 10)); function twice() { return 2 * v }", "ok", "", ""},
		{"twice() + r", "ok", "45", ""},
		{"class K {}; await null; new K().constructor.name // a trailing comment", "ok", "'K'", ""},
		{"await 1; Promise.resolve('inner')", "ok", "'inner'", ""},
		{"await Promise.reject(new RangeError('no'))", "error", "", "RangeError"},
		{"const w = await Promise.reject(new Error('never'))", "error", "", "Error"},
		{"await (", "error", "", "SyntaxError"},
		{"r + v", "ok", "43", ""},
	}
	for _, st := range steps {
		res := exec(t, s, st.code)
		name := ""
		if res.Error != nil {
			name = res.Error.Name
		}
		if string(res.Status) != st.status || res.Result["text/plain"] != st.result || name != st.errName || res.State != run.SessionIdle {
			t.Errorf("cell %q: status %s result %q error %+v state %s stderr %s", st.code, res.Status, res.Result["text/plain"], res.Error, res.State, res.Stderr)
		}
	}
	res, err := s.Exec(t.Context(), run.CellRequest{Code: "await new Promise(() => {})", Timeout: limits.Duration(300 * time.Millisecond)}, run.CellStream{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != run.StatusTimeout || res.State != run.SessionIdle {
		t.Fatalf("a wait that never ends: status %s state %s reason %q", res.Status, res.State, res.Reason)
	}
	if r := exec(t, s, "r"); r.Result["text/plain"] != "41" {
		t.Errorf("after the interrupt: %+v", r)
	}
}
