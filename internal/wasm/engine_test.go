package wasm

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
)

// TestEngine runs the hand-written modules of testdata/ (WAT sources next
// to them; regenerate with `go generate`): no interpreter build needed, so
// the engine, the limits and the classification are always tested.
func TestEngine(t *testing.T) {
	t.Parallel()
	eachMode(t, testEngine)
}

func testEngine(t *testing.T, r *Runner) {
	tests := []struct {
		name     string
		module   string
		stdin    string
		limits   func(*limits.Limits)
		status   run.Status
		exit     int
		signal   string
		stdout   string
		stderr   string
		truncOut bool
		maxWall  time.Duration
	}{
		{name: "hello", module: "hello.wasm", status: run.StatusOK, stdout: "hello\n", stderr: "oops\n"},
		{name: "exit code", module: "exit.wasm", status: run.StatusExited, exit: 7},
		{name: "stdin", module: "echo.wasm", stdin: "line one\nline two\n", status: run.StatusOK, stdout: "line one\nline two\n"},
		{
			name: "timeout", module: "spin.wasm", status: run.StatusTimeout, exit: -1,
			limits:  func(l *limits.Limits) { l.Timeout = limits.Duration(300 * time.Millisecond) },
			maxWall: 2 * time.Second,
		},
		{
			name: "cpu limit", module: "spin.wasm", status: run.StatusCPULimit, exit: -1,
			limits:  func(l *limits.Limits) { l.CPUTime = limits.Duration(200 * time.Millisecond) },
			maxWall: 2 * time.Second,
		},
		{
			name: "memory limit", module: "grow.wasm", status: run.StatusMemoryLimit, exit: -1, signal: "SIGABRT",
			limits: func(l *limits.Limits) { l.Memory = 8 * limits.MiB },
		},
		{name: "trap: out of bounds", module: "oob.wasm", status: run.StatusSignaled, exit: -1, signal: "SIGSEGV"},
		{name: "trap: divide by zero", module: "div0.wasm", status: run.StatusSignaled, exit: -1, signal: "SIGFPE"},
		{
			name: "initial memory over the limit", module: "bigmem.wasm", status: run.StatusMemoryLimit, exit: -1,
			limits: func(l *limits.Limits) { l.Memory = 32 * limits.MiB },
		},
		{
			name: "output limit", module: "flood.wasm", status: run.StatusOutputLimit, exit: -1, truncOut: true,
			limits: func(l *limits.Limits) { l.Output = 10000 },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := testLimits()
			if tt.limits != nil {
				tt.limits(&l)
			}
			e := Exec{Module: testdata(tt.module), Argv: []string{tt.module}, Limits: l}
			if tt.stdin != "" {
				e.Stdin = strings.NewReader(tt.stdin)
			}
			res := mustRun(t, r, e)
			if res.Status != tt.status || res.ExitCode != tt.exit || res.SignalName != tt.signal {
				t.Fatalf("got status %s exit %d signal %q, want %s %d %q\n%s", res.Status, res.ExitCode, res.SignalName, tt.status, tt.exit, tt.signal, summary(res))
			}
			if tt.stdout != "" && string(res.Stdout) != tt.stdout {
				t.Errorf("stdout %q, want %q", res.Stdout, tt.stdout)
			}
			if tt.stderr != "" && string(res.Stderr) != tt.stderr {
				t.Errorf("stderr %q, want %q", res.Stderr, tt.stderr)
			}
			if tt.truncOut && (!res.StdoutTruncated || int64(len(res.Stdout)) != int64(l.Output)) {
				t.Errorf("stdout: %d bytes, truncated %v; want the first %d bytes, truncated", len(res.Stdout), res.StdoutTruncated, l.Output)
			}
			if tt.maxWall > 0 && res.WallTime > tt.maxWall {
				t.Errorf("wall time %s, want under %s", res.WallTime, tt.maxWall)
			}
			if res.Isolation.Backend != run.BackendWasm {
				t.Errorf("isolation backend %q", res.Isolation.Backend)
			}
			if res.Status.LimitHit() && res.Reason == "" {
				t.Errorf("no reason for %s", res.Status)
			}
		})
	}
}

// TestLiveOutput checks that Stdout and Stderr get the bytes as the result
// does.
func TestLiveOutput(t *testing.T) {
	t.Parallel()
	eachMode(t, func(t *testing.T, r *Runner) {
		var out, errb bytes.Buffer
		res := mustRun(t, r, Exec{Module: testdata("hello.wasm"), Argv: []string{"hello"}, Stream: run.Stream{Stdout: &out, Stderr: &errb}, Limits: testLimits()})
		if out.String() != "hello\n" || errb.String() != "oops\n" || res.Status != run.StatusOK {
			t.Fatalf("live stdout %q stderr %q, %s", out.String(), errb.String(), summary(res))
		}
	})
}

// TestFanout: a module whose computation passes no loop header. Only a
// worker, killed at the deadline, stops it; wazero's close-on-done checks
// never run in it (see RATIONALE.md), so ModeInProcess is not tested here:
// its goroutine would spin for hours.
func TestFanout(t *testing.T) {
	t.Parallel()
	l := testLimits()
	l.Timeout = limits.Duration(300 * time.Millisecond)
	res := mustRun(t, runnerFor(t, ModeWorker), Exec{Module: testdata("fanout.wasm"), Argv: []string{"fanout"}, Limits: l})
	if res.Status != run.StatusTimeout || res.WallTime > 2*time.Second {
		t.Fatalf("%s, wall %s; want a timeout at 300ms", summary(res), res.WallTime)
	}
}
