package isolate

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
)

func stringsReader(s string) io.Reader { return strings.NewReader(s) }

func TestRunStatuses(t *testing.T) {
	r := requireRunner(t)
	cases := []struct {
		name   string
		code   string
		l      limits.Limits
		stdin  string
		status run.Status
		check  func(t *testing.T, res *run.Result)
	}{
		{name: "ok", code: "print('hello')", status: run.StatusOK, check: func(t *testing.T, res *run.Result) {
			if string(res.Stdout) != "hello\n" {
				t.Errorf("stdout %q", res.Stdout)
			}
		}},
		{name: "stdin", code: "import sys; print(sys.stdin.read().upper(), end='')", stdin: "abc\ndef\n", status: run.StatusOK, check: func(t *testing.T, res *run.Result) {
			if string(res.Stdout) != "ABC\nDEF\n" {
				t.Errorf("stdout %q", res.Stdout)
			}
		}},
		{name: "exit code", code: "import sys; sys.stderr.write('bye'); sys.exit(3)", status: run.StatusExited, check: func(t *testing.T, res *run.Result) {
			if res.ExitCode != 3 || string(res.Stderr) != "bye" {
				t.Errorf("exit %d stderr %q", res.ExitCode, res.Stderr)
			}
		}},
		{name: "sigsegv", code: "import ctypes; ctypes.string_at(0)", status: run.StatusSignaled, check: func(t *testing.T, res *run.Result) {
			if res.Signal != int(syscall.SIGSEGV) || res.SignalName != "SIGSEGV" || res.ExitCode != -1 {
				t.Errorf("signal %d %q exit %d", res.Signal, res.SignalName, res.ExitCode)
			}
		}},
		{name: "abort is SIGABRT, not ignored as PID 1", code: "import os; os.abort()", status: run.StatusSignaled, check: func(t *testing.T, res *run.Result) {
			if res.Signal != int(syscall.SIGABRT) {
				t.Errorf("signal %d, want SIGABRT", res.Signal)
			}
		}},
		{name: "timeout", code: "while True: pass", l: limits.Limits{Timeout: limits.Duration(500 * time.Millisecond)}, status: run.StatusTimeout, check: func(t *testing.T, res *run.Result) {
			if res.WallTime < 500*time.Millisecond || res.WallTime > 3*time.Second {
				t.Errorf("wall time %v for a 500ms deadline", res.WallTime)
			}
		}},
		{name: "cpu limit", code: "while True: pass", l: limits.Limits{CPUTime: limits.Duration(300 * time.Millisecond)}, status: run.StatusCPULimit, check: func(t *testing.T, res *run.Result) {
			if res.CPUTime < 300*time.Millisecond {
				t.Errorf("cpu time %v below the 300ms limit", res.CPUTime)
			}
		}},
		{name: "memory limit", code: "x=[]\nwhile True: x.append(bytearray(16<<20))", l: limits.Limits{Memory: 64 * limits.MiB}, status: run.StatusMemoryLimit, check: func(t *testing.T, res *run.Result) {
			if res.OOMKills < 1 || res.PeakMemory < 48<<20 || res.PeakMemory > 72<<20 {
				t.Errorf("oom kills %d, peak %d for a 64MiB limit", res.OOMKills, res.PeakMemory)
			}
		}},
		{name: "output limit", code: "import sys\nwhile True: sys.stdout.write('x'*65536)", l: limits.Limits{Output: 100 * limits.KiB}, status: run.StatusOutputLimit, check: func(t *testing.T, res *run.Result) {
			if len(res.Stdout) != 100<<10 || !res.StdoutTruncated {
				t.Errorf("stdout %d bytes, truncated %v", len(res.Stdout), res.StdoutTruncated)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := runPython(t, r, c.code, c.l, c.stdin)
			if res.Status != c.status {
				t.Fatalf("status %s (%s), want %s; stderr %q", res.Status, res.Reason, c.status, res.Stderr)
			}
			if c.check != nil {
				c.check(t, res)
			}
		})
	}
}

// TestNoLeakedFDs: the program gets stdio and nothing else of the parent
// or of init (CVE-2024-21626 was a leaked fd).
func TestNoLeakedFDs(t *testing.T) {
	r := requireRunner(t)
	extra, err := os.Open("/etc/hostname") // an fd the test holds open
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	res := runPython(t, r, "import os; print(sorted(int(f) for f in os.listdir('/proc/self/fd')))", limits.Limits{}, "")
	// listdir's own directory fd is the only one past stdio.
	if got := strings.TrimSpace(string(res.Stdout)); got != "[0, 1, 2, 3]" {
		t.Errorf("program's fds %s, want stdio and listdir's own", got)
	}
}

// TestKilledRunLeavesNothing: a run killed at its deadline with a
// double-forked daemon leaves no process, cgroup or run dir behind.
func TestKilledRunLeavesNothing(t *testing.T) {
	r := requireRunner(t)
	code := `import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(1000)
    os._exit(0)
time.sleep(1000)`
	res := runPython(t, r, code, limits.Limits{Timeout: limits.Duration(300 * time.Millisecond)}, "")
	if res.Status != run.StatusTimeout {
		t.Fatalf("status %s", res.Status)
	}
	// Other runs (other test packages) may be live on the host: look for
	// this run's processes by their cgroup, which names the run.
	if pids := hostPidsInCgroup(res.ID); len(pids) > 0 {
		t.Errorf("processes of the run survive it: %v", pids)
	}
	names, err := r.cg.list()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if strings.HasPrefix(n, res.ID) {
			t.Errorf("cgroup %s survives its run", n)
		}
	}
}

// hostPidsInCgroup lists host processes whose cgroup path mentions id.
func hostPidsInCgroup(id string) []string {
	var pids []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup"))
		if err == nil && strings.Contains(string(b), id) {
			pids = append(pids, e.Name())
		}
	}
	return pids
}

// TestSetupFailureIsReported: an init-stage failure comes back as an
// internal error naming the step, not as a hang or a bare exit code.
func TestSetupFailureIsReported(t *testing.T) {
	r := requireRunner(t)
	ws, err := r.NewWorkspace(limits.MiB)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	res, err := r.Run(context.Background(), ws, Exec{Argv: []string{"/nonexistent/prog"}, Limits: limits.Defaults()})
	if err == nil || res.Status != run.StatusInternalError || !strings.Contains(res.Error, "exec /nonexistent/prog") {
		t.Fatalf("err %v, status %s, error %q", err, res.Status, res.Error)
	}
}

// TestCanceledRunDies: canceling the context kills the run at once.
func TestCanceledRunDies(t *testing.T) {
	r := requireRunner(t)
	ws, err := r.NewWorkspace(limits.MiB)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	res, _ := r.Run(ctx, ws, Exec{Argv: []string{"/bin/sleep", "100"}, Limits: limits.Defaults()})
	if res.Status != run.StatusCanceled || res.Error != "" || time.Since(start) > 5*time.Second {
		t.Fatalf("status %s error %q after %v", res.Status, res.Error, time.Since(start))
	}
}

// TestCanceledDuringSetup: a caller that goes while the sandbox is being
// built gets the result of a canceled run, as it would a moment later, not
// a sandbox failure; a passed deadline is a timeout.
func TestCanceledDuringSetup(t *testing.T) {
	r := requireRunner(t)
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	for _, c := range []struct {
		name   string
		ctx    context.Context
		status run.Status
	}{{"canceled", canceled, run.StatusCanceled}, {"deadline", expired, run.StatusTimeout}} {
		ws, err := r.NewWorkspace(limits.MiB)
		if err != nil {
			t.Fatal(err)
		}
		res, err := r.Run(c.ctx, ws, Exec{Argv: []string{"/bin/true"}, Limits: limits.Defaults()})
		ws.Close()
		if err != nil || res.Status != c.status || !strings.HasPrefix(res.Reason, "stopped:") {
			t.Errorf("%s before setup: err %v, status %s, reason %q; want %s, stopped", c.name, err, res.Status, res.Reason, c.status)
		}
	}
}

// TestSweepSparesOtherRunners: a second runner (another state dir, the same
// cgroup parent) starting up while a run is live must not touch that run.
func TestSweepSparesOtherRunners(t *testing.T) {
	a := requireRunner(t)
	done := make(chan *run.Result, 1)
	go func() {
		ws, err := a.NewWorkspace(limits.MiB)
		if err != nil {
			t.Error(err)
			done <- nil
			return
		}
		res, _ := a.Run(context.Background(), ws, Exec{Argv: []string{"/bin/sleep", "1"}, Limits: limits.Defaults()})
		// Closed before the result is handed over: a deferred Close ran
		// after it, racing the test's cleanup, which removes the state
		// dir, with the workspace's mounts still in it (EBUSY).
		ws.Close()
		done <- res
	}()
	time.Sleep(300 * time.Millisecond)
	for i := 0; i < 3; i++ {
		requireRunner(t) // New sweeps
	}
	if res := <-done; res == nil || res.Status != run.StatusOK {
		t.Fatalf("a live run of another runner was disturbed by a sweep: %+v", res)
	}
}

// TestInitJoinsTheRunsCgroup: on cgroup v1 init moves its own thread into
// the run's cgroup (nsinit.Config.CgroupTasks) instead of being moved by
// pid: the program, born of that thread, with every thread, and init once
// it is the reaper are in the run's cgroup on every hierarchy the run's
// limits use.
func TestInitJoinsTheRunsCgroup(t *testing.T) {
	r := requireRunner(t)
	if r.CgroupVersion() != "v1" {
		t.Skip("cgroup v1 only: on v2 init is cloned into the run's cgroup (TestV2ClonePlacementReal)")
	}
	ws, err := r.NewWorkspace(limits.Defaults().Tmpfs)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	stdinR, stdinW := io.Pipe()
	defer stdinW.Close()
	e := Exec{
		Argv:   []string{"/usr/bin/python3", "-c", "import sys; sys.stdin.read()"},
		Env:    []string{"PATH=/usr/bin:/bin"},
		Limits: limits.Defaults(),
	}
	e.Stdin = stdinR
	done := make(chan *run.Result, 1)
	go func() {
		res, err := r.Run(context.Background(), ws, e)
		if err != nil {
			t.Errorf("run: %v", err)
		}
		done <- res
	}()
	// init and the program, found by the run's cgroup name.
	var pids []string
	for deadline := time.Now().Add(20 * time.Second); len(pids) < 2; {
		if time.Now().After(deadline) {
			t.Fatalf("found %v in the run's cgroup, want init and the program", pids)
		}
		time.Sleep(20 * time.Millisecond)
		pids = hostPidsInCgroup(ws.ID())
	}
	for _, pid := range pids {
		tasks, err := os.ReadDir(filepath.Join("/proc", pid, "task"))
		if err != nil {
			t.Fatal(err)
		}
		// Init's Go runtime threads stay where init was cloned until
		// the reaper's execve ends them: check init once it is the
		// reaper, one thread.
		for deadline := time.Now().Add(10 * time.Second); len(tasks) > 1 && r.reaper != nil && readComm(pid) != "python3"; {
			if time.Now().After(deadline) {
				t.Fatalf("init (pid %s) still has %d threads, never became the reaper", pid, len(tasks))
			}
			time.Sleep(5 * time.Millisecond)
			if tasks, err = os.ReadDir(filepath.Join("/proc", pid, "task")); err != nil {
				t.Fatal(err)
			}
		}
		for _, task := range tasks {
			b, err := os.ReadFile(filepath.Join("/proc", pid, "task", task.Name(), "cgroup"))
			if err != nil {
				t.Fatal(err)
			}
			for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
				// hierarchy-id:controllers:path
				f := strings.SplitN(line, ":", 3)
				if len(f) != 3 {
					continue
				}
				for _, c := range v1Subsystems {
					if slices.Contains(strings.Split(f[1], ","), string(c)) && !strings.Contains(f[2], ws.ID()) {
						t.Errorf("pid %s thread %s is in %s cgroup %s, not the run's", pid, task.Name(), c, f[2])
					}
				}
			}
		}
	}
	stdinW.Close()
	if res := <-done; res != nil && res.Status != run.StatusOK {
		t.Errorf("status %s (%s)", res.Status, res.Reason)
	}
}

// readComm is /proc/pid/comm without its newline.
func readComm(pid string) string {
	b, _ := os.ReadFile(filepath.Join("/proc", pid, "comm"))
	return strings.TrimSpace(string(b))
}
