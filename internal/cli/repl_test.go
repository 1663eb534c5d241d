package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/client"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/wire"
)

// TestReplRemote drives `sandboxctl repl --server` with piped input
// against a fake daemon: the cells it sends, what it prints, its exit.
func TestReplRemote(t *testing.T) {
	srv := fakeDaemon(t)
	var mu sync.Mutex
	var cells []string
	srv.Exec = func(_ string, req run.CellRequest, emit func(wire.CellEvent)) (*run.CellResult, *wire.ErrorDetail) {
		mu.Lock()
		cells = append(cells, req.Code)
		mu.Unlock()
		switch strings.TrimSpace(req.Code) {
		case "f(x)":
			return &run.CellResult{Status: run.StatusOK, Result: run.MIMEBundle{"text/plain": "10"}}, nil
		case "print('hi')":
			emit(wire.CellEvent{Type: "stdout", Data: "hi\n"})
			return &run.CellResult{Status: run.StatusOK}, nil
		case "1/0":
			return &run.CellResult{Status: run.StatusError, Error: &run.CellError{Name: "ZeroDivisionError", Traceback: "Traceback\nZeroDivisionError: division by zero\n"}}, nil
		case "exit(3)":
			return &run.CellResult{Status: run.StatusError, Error: &run.CellError{Name: "SystemExit", Value: "3", Traceback: "Traceback\nSystemExit: 3\n"}}, nil
		case "exit()":
			return &run.CellResult{Status: run.StatusError, Error: &run.CellError{Name: "SystemExit", Value: "None", Traceback: "Traceback\nSystemExit\n"}}, nil
		case "sys.exit('bye')":
			return &run.CellResult{Status: run.StatusError, Error: &run.CellError{Name: "SystemExit", Value: "bye", Traceback: "Traceback\nSystemExit: bye\n"}}, nil
		case "allocate":
			return &run.CellResult{Status: run.StatusMemoryLimit, Reason: "the memory limit was reached; the session is dead", State: run.SessionDead}, nil
		case "sleep":
			return &run.CellResult{Status: run.StatusTimeout, Reason: "the cell's timeout was reached; the session goes on", Error: &run.CellError{Name: "KeyboardInterrupt", Traceback: "KeyboardInterrupt\n"}}, nil
		}
		return &run.CellResult{Status: run.StatusOK}, nil
	}
	for _, tc := range []struct {
		name           string
		input          string
		cells          []string
		stdout, stderr string
		code           int
	}{
		{"the brief's example", "x = 5\ndef f(a):\n    return a * 2\n\nf(x)\n",
			[]string{"x = 5\n", "def f(a):\n    return a * 2\n", "f(x)\n"}, "10\n", "", 0},
		{"no newline at the end", "print('hi')\n1/0\nf(x)",
			[]string{"print('hi')\n", "1/0\n", "f(x)\n"}, "hi\n10\n", "Traceback\nZeroDivisionError: division by zero\n", 0},
		{"a block open at the end", "def g():\n    return 1",
			[]string{"def g():\n    return 1\n"}, "", "", 0},
		{"a limit, and the session goes on", "sleep\nf(x)\n",
			[]string{"sleep\n", "f(x)\n"}, "10\n", "KeyboardInterrupt\nsandboxctl: the cell's timeout was reached; the session goes on\n", 0},
		{"exit(3)", "x = 1\nexit(3)\nf(x)\n", []string{"x = 1\n", "exit(3)\n"}, "", "", 3},
		{"exit()", "exit()\nf(x)\n", []string{"exit()\n"}, "", "", 0},
		{"sys.exit with a message", "sys.exit('bye')\n", []string{"sys.exit('bye')\n"}, "", "bye\n", 1},
		{"the session dies", "allocate\nf(x)\n", []string{"allocate\n"}, "", "sandboxctl: the memory limit was reached; the session is dead\n", 122},
		{"empty input", "", nil, "", "", 0},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			mu.Lock()
			cells = nil
			mu.Unlock()
			out, errOut, code := sandboxctl(t, tc.input, "repl", "--server", srv.URL, "--memory", "512MiB")
			mu.Lock()
			got := cells
			mu.Unlock()
			if code != tc.code || out != tc.stdout || errOut != tc.stderr || fmt.Sprintf("%q", got) != fmt.Sprintf("%q", tc.cells) {
				t.Errorf("exit %d stdout %q stderr %q cells %q\nwant exit %d stdout %q stderr %q cells %q", code, out, errOut, got, tc.code, tc.stdout, tc.stderr, tc.cells)
			}
			if out, _, _ := sandboxctl(t, "", "session", "ls", "--json"); !strings.Contains(out, `"sessions": []`) {
				t.Errorf("the REPL left its session: %s", out)
			}
		})
	}

	t.Run("session gone", func(t *testing.T) {
		srv.Exec = func(id string, _ run.CellRequest, _ func(wire.CellEvent)) (*run.CellResult, *wire.ErrorDetail) {
			srv.Remove(id) // expired behind the REPL's back
			return &run.CellResult{Status: run.StatusOK}, nil
		}
		out, errOut, code := sandboxctl(t, "1\n2\n3\n", "repl", "--server", srv.URL)
		if code != 125 || out != "" || !strings.Contains(errOut, "404") || strings.Count(errOut, "\n") != 1 {
			t.Errorf("exit %d stdout %q stderr %q", code, out, errOut)
		}
	})
	t.Run("no daemon", func(t *testing.T) {
		_, errOut, code := sandboxctl(t, "1\n", "repl", "--server", "http://127.0.0.1:1")
		if code != 125 || errOut == "" {
			t.Errorf("exit %d stderr %q", code, errOut)
		}
	})
}

// fakeBackend runs cells in the test: each blocks until release or the
// end of its context.
type fakeBackend struct {
	mu      sync.Mutex
	cells   []string
	release chan struct{}
	closed  bool
	// intrd ends a blocking cell with a KeyboardInterrupt (interrupt);
	// nil makes interrupt fail, as a session that cannot take one.
	intrd chan struct{}
}

func (f *fakeBackend) exec(ctx context.Context, code string, live client.Live) (*run.CellResult, error) {
	f.mu.Lock()
	f.cells = append(f.cells, code)
	f.mu.Unlock()
	if strings.HasPrefix(code, "block") {
		fmt.Fprintln(live.Stdout, "blocking")
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-f.intrd:
			return &run.CellResult{Status: run.StatusError, Error: &run.CellError{Name: "KeyboardInterrupt", Traceback: "KeyboardInterrupt\n"}}, nil
		case <-f.release:
		}
	}
	return &run.CellResult{Status: run.StatusOK, Result: run.MIMEBundle{"text/plain": "ran " + strings.TrimSpace(code)}}, nil
}

func (f *fakeBackend) interrupt(context.Context) error {
	if f.intrd == nil {
		return errors.New("no interrupt")
	}
	f.intrd <- struct{}{}
	return nil
}

func (f *fakeBackend) gone(error) bool { return false }
func (f *fakeBackend) banner() string  { return "fake" }
func (f *fakeBackend) close(context.Context) error {
	f.closed = true
	return nil
}

// waitFor waits until b holds want, or fails the test.
func waitFor(t *testing.T, b *lockedBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(b.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("waited 5s for %q; have %q", want, b.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestReplInterrupts: SIGINT (here, a send on the REPL's channel) while a
// cell runs ends that cell's request and the REPL goes on; at a "... "
// prompt it drops the lines typed so far.
func TestReplInterrupts(t *testing.T) {
	var out, errOut lockedBuffer
	fb := &fakeBackend{release: make(chan struct{})}
	intr := make(chan struct{}, 1)
	r := &repl{b: fb, view: newCellView(&out, &errOut, ""), prompts: true, intr: intr}
	in, feed := io.Pipe()
	done := make(chan int)
	go func() { done <- r.run(t.Context(), in) }()

	waitFor(t, &errOut, ">>> ")
	io.WriteString(feed, "x = (1,\n")
	waitFor(t, &errOut, ">>> ... ")
	intr <- struct{}{}
	waitFor(t, &errOut, ">>> ... \nKeyboardInterrupt\n>>> ")
	io.WriteString(feed, "y\n")
	waitFor(t, &out, "ran y\n")

	io.WriteString(feed, "block\n")
	waitFor(t, &out, "blocking\n")
	intr <- struct{}{}
	waitFor(t, &errOut, "KeyboardInterrupt\n>>> ")
	io.WriteString(feed, "z\n")
	waitFor(t, &out, "ran z\n")
	feed.Close()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d at the end of input", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the REPL did not end at the end of its input")
	}
	if got := fmt.Sprintf("%q", fb.cells); got != `["y\n" "block\n" "z\n"]` {
		t.Errorf("cells %s", got)
	}
	if got, want := errOut.String(), ">>> ... \nKeyboardInterrupt\n>>> >>> KeyboardInterrupt\n>>> >>> \n"; got != want {
		t.Errorf("stderr %q, want %q", got, want)
	}
	if got, want := out.String(), "ran y\nblocking\nran z\n"; got != want {
		t.Errorf("stdout %q, want %q", got, want)
	}
}

// TestReplContextEnds: SIGTERM (the command's context ends) ends the REPL
// whether it waits for input or for a cell.
func TestReplContextEnds(t *testing.T) {
	for _, input := range []string{"", "block\n"} {
		var out, errOut lockedBuffer
		fb := &fakeBackend{release: make(chan struct{})}
		r := &repl{b: fb, view: newCellView(&out, &errOut, ""), intr: make(chan struct{})}
		in, feed := io.Pipe()
		defer feed.Close()
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan int)
		go func() { done <- r.run(ctx, in) }()
		io.WriteString(feed, input)
		if input != "" {
			waitFor(t, &out, "blocking")
		}
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("input %q: the REPL did not end with its context", input)
		}
	}
}

func TestSystemExit(t *testing.T) {
	for _, tc := range []struct {
		res  run.CellResult
		code int
		msg  string
		ok   bool
	}{
		{run.CellResult{Status: run.StatusOK}, 0, "", false},
		{run.CellResult{Status: run.StatusError, Error: &run.CellError{Name: "ValueError", Value: "3"}}, 0, "", false},
		{run.CellResult{Status: run.StatusError, Error: &run.CellError{Name: "SystemExit"}}, 0, "", true},
		{run.CellResult{Status: run.StatusError, Error: &run.CellError{Name: "SystemExit", Value: "None"}}, 0, "", true},
		{run.CellResult{Status: run.StatusError, Error: &run.CellError{Name: "SystemExit", Value: "7"}}, 7, "", true},
		{run.CellResult{Status: run.StatusError, Error: &run.CellError{Name: "SystemExit", Value: "257"}}, 1, "", true},
		{run.CellResult{Status: run.StatusError, Error: &run.CellError{Name: "SystemExit", Value: "bye"}}, 1, "bye", true},
	} {
		code, msg, ok := systemExit(&tc.res)
		if code != tc.code || msg != tc.msg || ok != tc.ok {
			t.Errorf("%+v: %d %q %v, want %d %q %v", tc.res.Error, code, msg, ok, tc.code, tc.msg, tc.ok)
		}
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 12 << 10: "12 KiB", 3<<20 + 200<<10: "3.2 MiB", 40 << 20: "40 MiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
	if got := imageSummary("not base64!", ""); got != "[image/png, not valid base64]" {
		t.Errorf("bad base64: %q", got)
	}
	if got := imageSummary("aGVsbG8=", ""); got != "[image/png, 5 B]" {
		t.Errorf("not a PNG: %q", got)
	}
}

// TestReplInterruptShowsTraceback: a first Ctrl-C during a cell interrupts
// it in the session (as Python's prompt does) and the REPL shows the
// cell's KeyboardInterrupt from its result; the request is not dropped.
func TestReplInterruptShowsTraceback(t *testing.T) {
	var out, errOut lockedBuffer
	fb := &fakeBackend{release: make(chan struct{}), intrd: make(chan struct{})}
	intr := make(chan struct{}, 1)
	r := &repl{b: fb, view: newCellView(&out, &errOut, ""), intr: intr}
	in, feed := io.Pipe()
	done := make(chan int)
	go func() { done <- r.run(t.Context(), in) }()
	io.WriteString(feed, "block\n")
	waitFor(t, &out, "blocking\n")
	intr <- struct{}{}
	waitFor(t, &errOut, "KeyboardInterrupt\n")
	io.WriteString(feed, "z\n")
	waitFor(t, &out, "ran z\n")
	feed.Close()
	if code := <-done; code != 0 {
		t.Errorf("exit %d", code)
	}
	if got := fmt.Sprintf("%q", fb.cells); got != `["block\n" "z\n"]` {
		t.Errorf("cells %s", got)
	}
}
