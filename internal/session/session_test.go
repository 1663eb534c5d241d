package session

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/errdefs"
	"github.com/sandboxd/sandboxd/internal/isolate"
	"github.com/sandboxd/sandboxd/internal/isolate/nsinit"
	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/testenv"
)

func TestMain(m *testing.M) {
	nsinit.MaybeRun()
	os.Exit(m.Run())
}

// newManager returns a Manager on a real process backend with its own
// state directory, closed at the end of the test.
func newManager(t *testing.T, cfg Config) *Manager {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("requires root for the process backend")
	}
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		testenv.MissingFile(t, "/usr/bin/python3")
	}
	state, parent := testenv.StateDir(t, "sessiontest")
	r, err := isolate.New(isolate.Config{StateDir: state, CgroupParent: parent})
	if err != nil {
		testenv.MissingSandbox(t, err)
	}
	cfg.Runner = r
	if cfg.Replica == "" {
		cfg.Replica = "test"
	}
	m := NewManager(context.Background(), cfg)
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("close manager: %v", err)
		}
	})
	return m
}

func exec(t *testing.T, s *Session, code string) *run.CellResult {
	t.Helper()
	res, err := s.Exec(t.Context(), run.CellRequest{Code: code}, run.CellStream{})
	if err != nil {
		t.Fatalf("exec %q: %v", code, err)
	}
	return res
}

func TestCellsShareState(t *testing.T) {
	m := newManager(t, Config{})
	s, err := m.Create(t.Context(), "me", &run.SessionSpec{Files: []run.File{{Name: "data.csv", Content: []byte("a,b\n1,2\n")}}})
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		code   string
		status run.Status
		stdout string
		result string
	}{
		{"import json\nx = 41\nprint('set')", run.StatusOK, "set\n", ""},
		{"x + 1", run.StatusOK, "", "42"},
		{"open('data.csv').read()", run.StatusOK, "", "'a,b\\n1,2\\n'"},
		{"open('out.txt', 'w').write('hi')", run.StatusOK, "", "2"},
		{"open('out.txt').read() + json.dumps(x)", run.StatusOK, "", "'hi41'"},
		{"1/0", run.StatusError, "", ""},
		{"x", run.StatusOK, "", "41"},
		{"import sys\nprint('e', file=sys.stderr)\nprint('o')", run.StatusOK, "o\n", ""},
		// The workspace is on the import path, as a script's directory.
		{"open('helper.py', 'w').write('K = 7')\nimport helper\nhelper.K", run.StatusOK, "", "7"},
	}
	for i, st := range steps {
		res := exec(t, s, st.code)
		if res.Status != st.status || string(res.Stdout) != st.stdout || res.Result["text/plain"] != st.result || res.State != run.SessionIdle || res.Cell != i+1 {
			t.Errorf("cell %q: status %s stdout %q result %q state %s cell %d (reason %q, error %+v)", st.code, res.Status, res.Stdout, res.Result["text/plain"], res.State, res.Cell, res.Reason, res.Error)
		}
	}
	res := exec(t, s, "1/0")
	if res.Error == nil || res.Error.Name != "ZeroDivisionError" || !strings.Contains(res.Error.Traceback, "1/0") || !strings.Contains(res.Error.Traceback, "<cell-") {
		t.Errorf("error %+v", res.Error)
	}
	res = exec(t, s, "import sys\nprint('e', file=sys.stderr)")
	if string(res.Stderr) != "e\n" {
		t.Errorf("stderr %q", res.Stderr)
	}
}

func TestCellTimeoutInterrupts(t *testing.T) {
	m := newManager(t, Config{})
	s, err := m.Create(t.Context(), "me", &run.SessionSpec{})
	if err != nil {
		t.Fatal(err)
	}
	exec(t, s, "n = 7")
	res, err := s.Exec(t.Context(), run.CellRequest{Code: "import time\nprint('start', flush=True)\ntime.sleep(60)", Timeout: limits.Duration(300 * time.Millisecond)}, run.CellStream{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != run.StatusTimeout || res.State != run.SessionIdle || res.Error == nil || res.Error.Name != "KeyboardInterrupt" || string(res.Stdout) != "start\n" {
		t.Fatalf("timeout cell: status %s state %s error %+v stdout %q reason %q", res.Status, res.State, res.Error, res.Stdout, res.Reason)
	}
	if res := exec(t, s, "n"); res.Result["text/plain"] != "7" {
		t.Errorf("after the interrupt: %+v", res)
	}
	// Rendering a trailing value is the cell's time too.
	res, err = s.Exec(t.Context(), run.CellRequest{Code: "class Slow:\n  def __repr__(self):\n    import time\n    time.sleep(60)\nSlow()", Timeout: limits.Duration(300 * time.Millisecond)}, run.CellStream{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != run.StatusTimeout || res.State != run.SessionIdle {
		t.Errorf("a slow repr: status %s state %s reason %q", res.Status, res.State, res.Reason)
	}
}

func TestHardHangKillsSession(t *testing.T) {
	m := newManager(t, Config{})
	s, err := m.Create(t.Context(), "me", &run.SessionSpec{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Exec(t.Context(), run.CellRequest{Code: "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass", Timeout: limits.Duration(200 * time.Millisecond)}, run.CellStream{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != run.StatusTimeout || res.State != run.SessionDead || !strings.Contains(res.Reason, "killed") {
		t.Fatalf("hard hang: status %s state %s reason %q", res.Status, res.State, res.Reason)
	}
	if _, err := s.Exec(t.Context(), run.CellRequest{Code: "1"}, run.CellStream{}); !errors.Is(err, ErrDead) {
		t.Errorf("exec on a dead session: %v", err)
	}
	if res.CPUTime < 500*time.Millisecond {
		t.Errorf("a cell that spun for over 2s reports %v of CPU", res.CPUTime)
	}
	if info := s.Info(); info.State != run.SessionDead || !strings.Contains(info.Reason, "did not stop") {
		t.Errorf("info %+v", info)
	}
}

// syncBuffer is a bytes.Buffer safe for the live writers' goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestKernelExitKillsSession: a cell that ends the interpreter itself
// (os._exit) ends the session with the kernel's exit status; sys.exit is
// an exception like any other and the session goes on.
func TestKernelExitKillsSession(t *testing.T) {
	m := newManager(t, Config{})
	s, err := m.Create(t.Context(), "me", &run.SessionSpec{})
	if err != nil {
		t.Fatal(err)
	}
	if res := exec(t, s, "import sys\nsys.exit(4)"); res.Status != run.StatusError || res.Error.Name != "SystemExit" || res.State != run.SessionIdle {
		t.Errorf("sys.exit: %+v", res)
	}
	res := exec(t, s, "import os\nprint('bye', flush=True)\nos._exit(3)")
	if res.Status != run.StatusExited || res.State != run.SessionDead || !strings.Contains(res.Reason, "code 3") || string(res.Stdout) != "bye\n" {
		t.Errorf("os._exit: status %s state %s reason %q stdout %q", res.Status, res.State, res.Reason, res.Stdout)
	}
}

// TestInterrupt: Interrupt ends the running cell with a KeyboardInterrupt
// (status error, as Ctrl-C in a notebook) and the session goes on; with no
// cell running it does nothing.
func TestInterrupt(t *testing.T) {
	m := newManager(t, Config{})
	s, err := m.Create(t.Context(), "me", &run.SessionSpec{})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Interrupt(); ok || err != nil {
		t.Errorf("interrupt of an idle session: %v %v", ok, err)
	}
	res := interruptRunning(t, s, "import time\nprint('in', flush=True)\ntime.sleep(60)")
	if res.Status != run.StatusError || res.Error == nil || res.Error.Name != "KeyboardInterrupt" || res.State != run.SessionIdle {
		t.Fatalf("interrupted cell: %+v", res)
	}
	if r := exec(t, s, "1+1"); r.Result["text/plain"] != "2" {
		t.Errorf("after the interrupt: %+v", r)
	}
}

// interruptRunning runs code, a cell that runs for long, and interrupts
// it until it ends; it returns the cell's result.
func interruptRunning(t *testing.T, s *Session, code string) *run.CellResult {
	t.Helper()
	done := make(chan *run.CellResult, 1)
	go func() {
		res, err := s.Exec(t.Context(), run.CellRequest{Code: code}, run.CellStream{})
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		// The kernel takes the interrupt only once the cell runs: retry.
		if ok, err := s.Interrupt(); err != nil {
			t.Fatal(err)
		} else if ok {
			select {
			case res := <-done:
				return res
			case <-time.After(100 * time.Millisecond):
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the cell was never interrupted")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWaitingCellsBounded: behind a running cell, a session holds up to
// MaxWaitingCells waiting cells and MaxWaitingCodeBytes of their code;
// past either a cell is refused at once (429 over HTTP), and the waiting
// ones still run in their turn. One 14 MiB cell waits; a second does not.
// Expect, which the API asks before reading a request, says the same, and
// counts the requests being read as waiting.
func TestWaitingCellsBounded(t *testing.T) {
	m := newManager(t, Config{})
	s, err := m.Create(t.Context(), "me", &run.SessionSpec{Limits: limits.Limits{Timeout: limits.Duration(60 * time.Second)}})
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		live := run.CellStream{Stdout: writerFunc(func(b []byte) (int, error) {
			select {
			case <-started:
			default:
				close(started)
			}
			return len(b), nil
		})}
		// The running cell holds the turn until the test drops "go" in.
		code := "import os, time\nprint('in', flush=True)\nwhile not os.path.exists('go'): time.sleep(0.01)"
		res, err := s.Exec(t.Context(), run.CellRequest{Code: code}, live)
		if err != nil || res.Status != run.StatusOK {
			t.Errorf("the running cell: %+v %v", res, err)
		}
	}()
	<-started

	results := make(chan *run.CellResult, MaxWaitingCells)
	wait := func(code string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := s.Exec(t.Context(), run.CellRequest{Code: code}, run.CellStream{})
			if err != nil {
				t.Errorf("a waiting cell: %v", err)
				return
			}
			results <- res
		}()
	}
	waitFor := func(n int) {
		for s.queue.waiting() < n {
			time.Sleep(time.Millisecond)
		}
	}
	refused := func(what, code string) {
		t.Helper()
		_, err := s.Exec(t.Context(), run.CellRequest{Code: code}, run.CellStream{})
		if !errors.Is(err, ErrCellQueueFull) || !errdefs.Is(err, errdefs.ErrExhausted) {
			t.Errorf("%s: %v, want ErrCellQueueFull", what, err)
		}
	}
	expect := func(what string, n int64, want bool) (done func()) {
		t.Helper()
		done, err := s.Expect(n)
		if got := err == nil; got != want || (err != nil && !errors.Is(err, ErrCellQueueFull)) {
			t.Errorf("Expect, %s: %v, want let in = %v", what, err, want)
		}
		if done == nil {
			done = func() {}
		}
		return done
	}
	big := "1+1  #" + strings.Repeat("x", 14<<20)
	// A request being read counts as waiting: the second large one is
	// refused before it is read, and a small one is not.
	done := expect("a 15 MiB request with none waiting", 15<<20, true)
	expect("a second 15 MiB request while the first is read", 15<<20, false)
	expect("a 1 KiB request while the first is read", 1<<10, true)()
	done()
	done() // twice is once
	wait(big)
	waitFor(1)
	refused("a second 14 MiB cell", big)
	expect("a second 14 MiB request", 14<<20, false)
	expect("a 1 MiB request", 1<<20, true)()
	for i := 1; i < MaxWaitingCells; i++ {
		wait("1+1")
	}
	waitFor(MaxWaitingCells)
	refused("a small cell past the count", "1+1")
	expect("a small request past the count", 20, false)
	if err := s.ws.WriteFile(run.File{Name: "go"}); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(results)
	n := 0
	for res := range results {
		if res.Result["text/plain"] != "2" {
			t.Errorf("a waiting cell's result: %+v", res.Result)
		}
		n++
	}
	if n != MaxWaitingCells || s.queue.waiting() != 0 || s.queue.bytes != 0 || s.queue.expected != 0 || s.queue.expectedBytes != 0 {
		t.Errorf("%d waiting cells ran, %d still counted holding %d bytes, %d expected holding %d", n, s.queue.waiting(), s.queue.bytes, s.queue.expected, s.queue.expectedBytes)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// TestCellClientGone: a cell whose client goes away is interrupted and
// ends canceled, not as an internal error, and the session goes on.
func TestCellClientGone(t *testing.T) {
	m := newManager(t, Config{})
	s, err := m.Create(t.Context(), "me", &run.SessionSpec{})
	if err != nil {
		t.Fatal(err)
	}
	exec(t, s, "kept = 'yes'")
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(300*time.Millisecond, cancel)
	res, err := s.Exec(ctx, run.CellRequest{Code: "import time\ntime.sleep(30)"}, run.CellStream{})
	if err != nil || res.Status != run.StatusCanceled || res.State != run.SessionIdle || !strings.Contains(res.Reason, "client went away") {
		t.Fatalf("%v, %+v", err, res)
	}
	if r := exec(t, s, "kept"); r.Result["text/plain"] != "'yes'" {
		t.Errorf("after a canceled cell: %+v", r)
	}
}
