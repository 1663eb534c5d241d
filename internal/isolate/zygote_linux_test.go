package isolate

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sandboxd/sandboxd/internal/isolate/nsinit"
	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/runtimes"
	"github.com/sandboxd/sandboxd/internal/testenv"
)

// startZygote returns a fork server of the built-in Python runtime's
// warm runner, closed at the test's end.
func startZygote(t *testing.T, r *Runner) *Zygote {
	t.Helper()
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("needs /usr/bin/python3:", err)
	}
	rt, err := runtimes.Default().Lookup("python")
	if err != nil {
		t.Fatal(err)
	}
	env, err := runtimes.BuildEnv(rt.Env, nil)
	if err != nil {
		t.Fatal(err)
	}
	z, err := r.NewZygote(append([]string{rt.Binary}, rt.Warm.Flags...), rt.Warm.Source, env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { z.Close() })
	return z
}

// newTestWorkspace is a workspace of the default tmpfs size, removed at
// the test's end.
func newTestWorkspace(t *testing.T, r *Runner) *Workspace {
	t.Helper()
	ws, err := r.NewWorkspace(limits.Defaults().Tmpfs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	return ws
}

// runEntered runs code (main.py) through z in a sandbox started for it.
func runEntered(t *testing.T, r *Runner, z *Zygote, code string, l limits.Limits) *run.Result {
	t.Helper()
	return runEnteredCtl(t, r, z, code, l, map[string]any{"entry": "main.py", "args": []string{}, "env": map[string]string{}})
}

// runEnteredCtl is runEntered with the warm runner's control ctl.
func runEnteredCtl(t *testing.T, r *Runner, z *Zygote, code string, l limits.Limits, ctl map[string]any) *run.Result {
	t.Helper()
	wait, _ := activateEntered(t, r, z, code, l, ctl)
	return wait()
}

// zygoteServer is z's current server, its pid and the channel closed
// when it is reaped (0 and nil when there is none).
func zygoteServer(z *Zygote) (int, chan struct{}) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.proc == nil {
		return 0, nil
	}
	return z.proc.Pid, z.exited
}

// activateHeld starts a sandbox for ws through z and activates it with
// control: the run is the server's once it returns. On an error nothing
// of it is left.
func activateHeld(ctx context.Context, r *Runner, z *Zygote, ws *Workspace, l limits.Limits, control []byte) (*HeldProcess, error) {
	h, err := r.StartEntered(ctx, ws, Exec{Limits: l}, z)
	if err != nil {
		return nil, err
	}
	if err := h.WaitReady(ctx); err == nil {
		err = h.Activate(ctx, Activation{Limits: l, Control: control})
	}
	if err != nil {
		h.Kill()
		_, _ = h.Wait()
		return nil, err
	}
	return h, nil
}

// activateEntered starts code's run through z and returns once the
// server has it, with what waits for its result and the run's workspace.
func activateEntered(t *testing.T, r *Runner, z *Zygote, code string, l limits.Limits, ctl map[string]any) (wait func() *run.Result, ws *Workspace) {
	t.Helper()
	ws, err := r.NewWorkspace(l.Tmpfs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	if err := ws.WriteFile(run.File{Name: "main.py", Content: []byte(code)}); err != nil {
		t.Fatal(err)
	}
	control, _ := json.Marshal(ctl)
	h, err := activateHeld(t.Context(), r, z, ws, l, control)
	if err != nil {
		t.Fatal(err)
	}
	return func() *run.Result {
		t.Helper()
		res, err := h.Wait()
		if err != nil {
			t.Fatal(err)
		}
		ws.Close()
		return res
	}, ws
}

// TestZygoteRunIsTheRuns: what a run forked by the zygote sees of itself
// is what a run started for it would: its command line and environment,
// its own /proc files (the ids' change left it undumpable until the
// zygote's child set it back), stdio and nothing else, the sandbox's
// clocks. Its parent is outside its pid namespace (getppid 0, where a
// program init started sees 1).
func TestZygoteRunIsTheRuns(t *testing.T) {
	r := requireRunner(t)
	z := startZygote(t, r)
	code := `import os, sys, time
print(open("/proc/self/cmdline", "rb").read().split(b"\0"))
print(b"ZYGOTE_TEST=token-1" in open("/proc/self/environ", "rb").read().split(b"\0"))
print(os.stat("/proc/self/fd").st_uid, os.getuid(), os.getgid())
print(sorted(os.listdir("/proc/self/fd")))
print(time.monotonic() < 60, os.getppid(), os.getcwd())
print(sys.argv, os.environ["ZYGOTE_TEST"])
`
	ctl := map[string]any{"entry": "main.py", "args": []string{"a b", "c"}, "env": map[string]string{"ZYGOTE_TEST": "token-1"}}
	res := runEnteredCtl(t, r, z, code, limits.Defaults(), ctl)
	want := `[b'/usr/bin/python3', b'main.py', b'a b', b'c', b'']
True
1000 1000 1000
['0', '1', '2', '3']
True 0 /workspace
['main.py', 'a b', 'c'] token-1
`
	if res.Status != run.StatusOK || string(res.Stdout) != want {
		t.Fatalf("%s %q, stderr %q; want stdout:\n%s", res.Status, res.Stdout, res.Stderr, want)
	}
}

// TestZygoteHoldsNoRunsData: the server's memory, which every later run
// shares, holds nothing of a run it served (a secret in its environment
// and arguments), and every child it forked for the runs is gone after.
// A server that read a request's config would fail here.
func TestZygoteHoldsNoRunsData(t *testing.T) {
	r := requireRunner(t)
	z := startZygote(t, r)
	secret := "zygote-secret-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	ctl := map[string]any{"entry": "main.py", "args": []string{secret}, "env": map[string]string{"SECRET": secret}}
	for i := 0; i < 3; i++ {
		res := runEnteredCtl(t, r, z, "import os, sys\nprint(os.environ['SECRET'] == sys.argv[1])\n", limits.Defaults(), ctl)
		if string(res.Stdout) != "True\n" {
			t.Fatalf("%s %q %q", res.Status, res.Stdout, res.Stderr)
		}
	}
	z.mu.Lock()
	pid := z.proc.Pid
	z.mu.Unlock()
	if n, err := countInMemory(pid, []byte(secret)); err != nil || n != 0 {
		t.Errorf("the server's memory holds the run's secret %d times (%v)", n, err)
	}
	children := fmt.Sprintf("/proc/%d/task/%d/children", pid, pid)
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(children)
		if err != nil {
			t.Fatal(err)
		}
		if len(strings.TrimSpace(string(b))) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server's children %s outlived their runs", b)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The check itself must be able to fail: the secret is found in a
	// Python process that was given it as the server would be, had it
	// read a request.
	holder := exec.Command("/usr/bin/python3", "-c", "import sys\nkept = sys.stdin.readline()\nprint(flush=True)\nsys.stdin.readline()")
	in, _ := holder.StdinPipe()
	out, _ := holder.StdoutPipe()
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { in.Close(); _ = holder.Wait() }()
	fmt.Fprintln(in, secret)
	if _, err := out.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	if n, err := countInMemory(holder.Process.Pid, []byte(secret)); err != nil || n == 0 {
		t.Fatalf("countInMemory does not find the secret in a process that holds it (%d, %v)", n, err)
	}
}

// countInMemory counts needle's occurrences in pid's readable, private
// writable mappings (the heap, stacks, anonymous memory).
func countInMemory(pid int, needle []byte) (int, error) {
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return 0, err
	}
	mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		return 0, err
	}
	defer mem.Close()
	n := 0
	for _, line := range strings.Split(string(maps), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || !strings.HasPrefix(f[1], "rw") {
			continue
		}
		lo, hi, _ := strings.Cut(f[0], "-")
		a, _ := strconv.ParseUint(lo, 16, 64)
		b, _ := strconv.ParseUint(hi, 16, 64)
		buf := make([]byte, b-a)
		k, _ := mem.ReadAt(buf, int64(a))
		n += bytes.Count(buf[:k], needle)
	}
	return n, nil
}

// TestZygoteRandomIsNotShared: runs forked from one interpreter do not
// share its random state (random reseeds in a forked child).
func TestZygoteRandomIsNotShared(t *testing.T) {
	r := requireRunner(t)
	z := startZygote(t, r)
	seen := map[string]bool{}
	for i := 0; i < 3; i++ {
		res := runEntered(t, r, z, "import random\nprint(random.random(), random.getrandbits(64))\n", limits.Defaults())
		if res.Status != run.StatusOK || seen[string(res.Stdout)] {
			t.Fatalf("run %d: %s %q (seen before: %v)", i, res.Status, res.Stdout, seen[string(res.Stdout)])
		}
		seen[string(res.Stdout)] = true
	}
}

// TestZygoteRunSkipsTheServersTeardown: a forked run ends without
// tearing down the modules it shares with the server (zygote.py,
// _finish), unless it could show: with a thread still running, the
// interpreter's own shutdown runs. Shown by a weakref callback on an
// object hung on json, a module the server imported: only a teardown of
// json calls it. (Python promises neither; a cold run does not call it.)
func TestZygoteRunSkipsTheServersTeardown(t *testing.T) {
	r := requireRunner(t)
	z := startZygote(t, r)
	const prog = "import json, weakref\nclass X:\n    pass\njson.x = X()\njson.r = weakref.ref(json.x, lambda r: print('torn down'))\nprint('end')\n"
	for _, c := range []struct{ name, code, want string }{
		{"single-threaded", prog, "end\n"},
		{"a thread still running", prog + "import threading, time\nthreading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n", "end\ntorn down\n"},
	} {
		res := runEntered(t, r, z, c.code, limits.Defaults())
		if res.Status != run.StatusOK || string(res.Stdout) != c.want {
			t.Errorf("%s: %s %q %q, want stdout %q", c.name, res.Status, res.Stdout, res.Stderr, c.want)
		}
	}
}

// TestZygoteRestarts: a server that died is started again by the next
// run, which runs.
func TestZygoteRestarts(t *testing.T) {
	r := requireRunner(t)
	z := startZygote(t, r)
	if res := runEntered(t, r, z, "print(1)\n", limits.Defaults()); string(res.Stdout) != "1\n" {
		t.Fatalf("%s %q %q", res.Status, res.Stdout, res.Stderr)
	}
	z.mu.Lock()
	first := z.proc.Pid
	_ = z.proc.Kill()
	<-z.exited // a request sent before it is gone would be lost with it
	z.mu.Unlock()
	if res := runEntered(t, r, z, "print(2)\n", limits.Defaults()); string(res.Stdout) != "2\n" {
		t.Fatalf("after the server was killed: %s %q %q", res.Status, res.Stdout, res.Stderr)
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.proc == nil || z.proc.Pid == first {
		t.Fatalf("the server was not started again")
	}
}

// TestZygoteRecycles: a server that has served its runs is let go and a
// new one takes the next run; the old one, told by its socket's EOF,
// finishes the run it holds and exits by itself.
func TestZygoteRecycles(t *testing.T) {
	r := requireRunner(t)
	z := startZygote(t, r)
	z.mu.Lock()
	z.maxRuns = 2
	z.mu.Unlock()
	if res := runEntered(t, r, z, "print(1)\n", limits.Defaults()); string(res.Stdout) != "1\n" {
		t.Fatalf("first run: %s %q %q", res.Status, res.Stdout, res.Stderr)
	}
	first, firstExited := zygoteServer(z)
	before := openFDs(t)
	// The old server's run lasts until the test lets it end (a file in
	// its workspace), not for a time a busy machine could outlast.
	long, longWS := activateEntered(t, r, z, waitForFile, limits.Defaults(), map[string]any{"entry": "main.py", "args": []string{}, "env": map[string]string{}})
	if res := runEntered(t, r, z, "print(3)\n", limits.Defaults()); string(res.Stdout) != "3\n" {
		t.Fatalf("third run: %s %q %q", res.Status, res.Stdout, res.Stderr)
	}
	if second, _ := zygoteServer(z); second == 0 || second == first {
		t.Fatalf("the third run went to server %d, the first two to %d: want a new one", second, first)
	}
	select {
	case <-firstExited:
		t.Fatal("the old server exited before the run it held ended")
	default:
	}
	letFinish(t, longWS, long, "the old server's run")
	select {
	case <-firstExited:
	case <-time.After(10 * time.Second):
		t.Fatal("the old server did not exit once its run ended")
	}
	// Its socket and its stderr's pipe are closed once it is gone (by
	// goroutines that see it go): the new server's take their place.
	deadline := time.Now().Add(5 * time.Second)
	for len(openFDs(t)) > len(before) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if after := openFDs(t); len(after) > len(before) {
		t.Errorf("the old server left descriptors behind:\n%s", strings.Join(newFDs(before, after), "\n"))
	}
}

// waitForFile is the program of a run that prints "waiting", makes a
// file "started" (waitStarted), waits until a file "go" is in its
// workspace and prints "done".
const waitForFile = "import os, time\nprint('waiting', flush=True)\nopen('started', 'w').close()\nwhile not os.path.exists('go'):\n    time.sleep(0.01)\nprint('done')\n"

// letFinish lets the waitForFile run in ws end and checks that it ended
// as it would have undisturbed.
func letFinish(t *testing.T, ws *Workspace, wait func() *run.Result, what string) {
	t.Helper()
	if err := ws.WriteFile(run.File{Name: "go"}); err != nil {
		t.Fatal(err)
	}
	if res := wait(); res.Status != run.StatusOK || string(res.Stdout) != "waiting\ndone\n" {
		t.Fatalf("%s: %s %q %q", what, res.Status, res.Stdout, res.Stderr)
	}
}

// waitStarted waits until a waitForFile run in ws has started.
func waitStarted(t *testing.T, ws *Workspace) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(ws.local(), "started")); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the run did not start")
		}
	}
}

// TestZygoteServerDeathEndsItsRuns: the server is the parent of its runs'
// processes and reports their end; one that dies mid-run (SIGKILL) takes
// its run with it at once, with an error, not with a status made up at
// the run's deadline a minute later; the next run is served by a new one.
func TestZygoteServerDeathEndsItsRuns(t *testing.T) {
	r := requireRunner(t)
	z := startZygote(t, r)
	l := limits.Defaults()
	l.Timeout = limits.Duration(60 * time.Second)
	l.CPUTime = l.Timeout
	wait, ws := activateEntered(t, r, z, waitForFile, l, map[string]any{"entry": "main.py", "args": []string{}, "env": map[string]string{}})
	waitStarted(t, ws)
	pid, _ := zygoteServer(z)
	if err := unix.Kill(pid, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res := wait()
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("the run ended %s after its server died", took)
	}
	if res.Status == run.StatusOK || res.Status == run.StatusTimeout {
		t.Errorf("a run whose server died: %s %q %q, want an error", res.Status, res.Stdout, res.Stderr)
	}
	t.Logf("the run: %s: %s", res.Status, res.Reason)
	if res := runEntered(t, r, z, "print(2)\n", limits.Defaults()); string(res.Stdout) != "2\n" {
		t.Fatalf("the next run: %s %q %q", res.Status, res.Stdout, res.Stderr)
	}
}

// TestZygoteRunSeesNoOtherRunsFiles: while one run is in flight the
// server holds its status pipe and init's pidfd, and every later child
// inherits them; a second run's process must close them before anything
// of it runs. It sees only its stdio (and the listing's own fd), and the
// first run, its bystander, ends as it would have.
func TestZygoteRunSeesNoOtherRunsFiles(t *testing.T) {
	r := requireRunner(t)
	z := startZygote(t, r)
	first, ws := activateEntered(t, r, z, waitForFile, limits.Defaults(), map[string]any{"entry": "main.py", "args": []string{}, "env": map[string]string{}})
	waitStarted(t, ws)
	res := runEntered(t, r, z, "import os\nprint(sorted(os.listdir('/proc/self/fd')))\n", limits.Defaults())
	if res.Status != run.StatusOK || string(res.Stdout) != "['0', '1', '2', '3']\n" {
		t.Errorf("a run beside another: %s %q %q, want its stdio alone", res.Status, res.Stdout, res.Stderr)
	}
	letFinish(t, ws, first, "the run in flight beside it")
}

// TestZygoteCloseLetsRunsEnd: Close lets the server go and waits for it:
// a run in flight ends as it would have and is reported, then the server
// is gone.
func TestZygoteCloseLetsRunsEnd(t *testing.T) {
	r := requireRunner(t)
	z := startZygote(t, r)
	wait, ws := activateEntered(t, r, z, waitForFile, limits.Defaults(), map[string]any{"entry": "main.py", "args": []string{}, "env": map[string]string{}})
	waitStarted(t, ws)
	pid, exited := zygoteServer(z)
	closed := make(chan struct{})
	go func() { z.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned while the server's run was going")
	case <-time.After(300 * time.Millisecond):
	}
	letFinish(t, ws, wait, "the run in flight at Close")
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return once the run ended")
	}
	<-exited
	if err := unix.Kill(pid, 0); err == nil {
		t.Errorf("the server %d is still there after Close", pid)
	}
}

// TestZygoteRecyclesByAge: a server as old as maxAge is replaced with
// no run to prompt it, and the next run goes to the new one.
func TestZygoteRecyclesByAge(t *testing.T) {
	r := requireRunner(t)
	z := startZygote(t, r)
	z.mu.Lock()
	z.maxAge = 300 * time.Millisecond
	z.stop() // the next start has the new bound
	z.mu.Unlock()
	if res := runEntered(t, r, z, "print(1)\n", limits.Defaults()); string(res.Stdout) != "1\n" {
		t.Fatalf("first run: %s %q %q", res.Status, res.Stdout, res.Stderr)
	}
	first, firstExited := zygoteServer(z)
	select {
	case <-firstExited:
	case <-time.After(10 * time.Second):
		t.Fatal("the server was not let go once its age was up")
	}
	if second, _ := zygoteServer(z); second == 0 || second == first {
		t.Fatalf("no new server took the old one's place (%d, the old %d)", second, first)
	}
	if res := runEntered(t, r, z, "print(2)\n", limits.Defaults()); string(res.Stdout) != "2\n" {
		t.Fatalf("a run on the new server: %s %q %q", res.Status, res.Stdout, res.Stderr)
	}
}

// TestEnteredSandboxHolds: a sandbox started for a zygote holds with no
// process but its PID 1, the reaper (no placeholder the run could see),
// until it is killed.
func TestEnteredSandboxHolds(t *testing.T) {
	r := requireRunner(t)
	z := startZygote(t, r)
	h, err := r.StartEntered(t.Context(), newTestWorkspace(t, r), Exec{Limits: limits.Defaults()}, z)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.WaitReady(t.Context()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	select {
	case <-h.Done():
		t.Fatal("the sandbox ended on its own")
	default:
	}
	pids, err := h.cg.pids()
	if err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", h.initPid))
	if len(pids) != 1 || pids[0] != h.initPid || !strings.Contains(exe, "sandboxd-reaper") {
		t.Fatalf("the sandbox's processes are %v (init %d, executing %q), want init alone, the reaper", pids, h.initPid, exe)
	}
	h.Kill()
	if _, err := h.Wait(); err != nil {
		t.Fatal(err)
	}
}

// TestEnteredSandboxSetupFails: init failing during the setup of a
// sandbox for a fork server is an error with its reason.
func TestEnteredSandboxSetupFails(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("requires root: the process backend creates cgroups and maps uids")
	}
	state, parent := testenv.StateDir(t, "test")
	r, err := New(Config{StateDir: state, CgroupParent: parent, Init: testInit, Spawner: true, Binds: []nsinit.Bind{{Path: "/nonexistent-sandboxd-bind"}}})
	if err != nil {
		testenv.MissingSandbox(t, err)
	}
	z := startZygote(t, r)
	h, err := r.StartEntered(t.Context(), newTestWorkspace(t, r), Exec{Limits: limits.Defaults()}, z)
	if err == nil {
		h.Kill()
		_, _ = h.Wait()
		t.Fatal("the sandbox started")
	}
	if !strings.Contains(err.Error(), "nonexistent-sandboxd-bind") {
		t.Fatalf("%v (want init's reason)", err)
	}
}

// TestSetupSeesInitGoneDespiteKeptStatusPipe: a sandbox for a fork server
// keeps a copy of init's status pipe, so the pipe's EOF no longer says
// that init died during setup without a word (killed, crashed); init's
// exit must, at once, not after the setup's timeout.
func TestSetupSeesInitGoneDespiteKeptStatusPipe(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	kept, err := dupFiles(w)
	if err != nil {
		t.Fatal(err)
	}
	s := &sandbox{enter: true, entry: kept, exited: make(chan struct{}), msgs: make(chan nsinit.Message, 4)}
	go readMessages(json.NewDecoder(r), s.msgs)
	w.Close() // init's own end, with init
	close(s.exited)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, err = s.nextMessage(ctx)
	if err == nil || !strings.Contains(err.Error(), "sandbox init ended") {
		t.Fatalf("%v, want init's end", err)
	}
	if s.takeEntry() != nil {
		t.Fatal("the kept ends were not let go")
	}
}

// TestZygoteJoinV2Real: on a cgroup v2 hierarchy the run's process joins
// the run's cgroup by writing 0 to the cgroup.procs file the daemon
// opened (openJoin), as zygote.py's _program does, from outside the
// cgroup. On a hybrid host the v2 hierarchy has no controllers, which is
// enough for membership.
func TestZygoteJoinV2Real(t *testing.T) {
	dir := realV2Dir(t)
	c := &v2Cgroup{dir: dir}
	defer func() {
		if err := c.destroy(); err != nil {
			t.Errorf("destroy: %v", err)
		}
	}()
	join, err := c.openJoin()
	if err != nil {
		t.Fatal(err)
	}
	defer closeFiles(join)
	if len(join) != 1 {
		t.Fatalf("%d files to join a v2 cgroup by, want cgroup.procs alone", len(join))
	}
	cmd := exec.Command("/usr/bin/python3", "-c", "import os, sys\nos.write(3, b'0')\nsys.stdout.write(open('/proc/self/cgroup').read())")
	cmd.ExtraFiles = join
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := "0::/" + filepath.Base(dir) + "\n"; !strings.Contains(string(out), want) {
		t.Fatalf("the process's cgroups after its join:\n%s\nwant the line %q", out, want)
	}
}

// TestZygoteRefusesAHostHome: a HOME whose .local exists on the host
// would have root import from it at the server's start.
func TestZygoteRefusesAHostHome(t *testing.T) {
	home := t.TempDir()
	if err := checkHostHome([]string{"HOME=" + home}); err != nil {
		t.Fatalf("a HOME with no .local: %v", err)
	}
	if err := os.Mkdir(filepath.Join(home, ".local"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := checkHostHome([]string{"PATH=/usr/bin", "HOME=" + home}); err == nil {
		t.Fatal("a HOME with a .local on the host was accepted")
	}
}

// TestZygoteAnswers: requests are answered in the order sent; a request
// the server could not fork for, and each one unanswered when the server
// is gone, is lost (its run is killed at once instead of waiting for its
// deadline); one a child took is not.
func TestZygoteAnswers(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	server := os.NewFile(uintptr(fds[1]), "server")
	f := os.NewFile(uintptr(fds[0]), "daemon")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var lost [4]chan struct{}
	pending := new([]func())
	for i := range lost {
		lost[i] = make(chan struct{})
		*pending = append(*pending, func() { close(lost[i]) })
	}
	z := &Zygote{}
	done := make(chan struct{})
	go func() { z.answers(c.(*net.UnixConn), pending); close(done) }()
	for _, b := range []string{"1", "0"} {
		if _, err := server.Write([]byte(b)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-lost[1]:
	case <-time.After(5 * time.Second):
		t.Fatal("a request the server could not fork for was not lost")
	}
	server.Close() // the server is gone with two requests unanswered
	<-done
	for i, want := range []bool{false, true, true, true} {
		select {
		case <-lost[i]:
			if !want {
				t.Errorf("request %d, which a child took, was lost", i)
			}
		default:
			if want {
				t.Errorf("request %d was not lost", i)
			}
		}
	}
}

// TestZygoteStderrIsLogged: what the server writes to its stderr reaches
// the daemon's log, a line per record, a line past the reader's buffer
// included (no writer may block on it).
func TestZygoteStderrIsLogged(t *testing.T) {
	var buf bytes.Buffer
	z := &Zygote{r: &Runner{log: slog.New(slog.NewTextHandler(&buf, nil))}}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { z.logStderr(r); close(done) }()
	fmt.Fprintln(w, "Traceback (most recent call last):")
	fmt.Fprintln(w, strings.Repeat("x", 100<<10))
	fmt.Fprintln(w, "after the long line")
	w.Close()
	<-done
	out := buf.String()
	if !strings.Contains(out, `msg="fork server" stderr="Traceback (most recent call last):"`) {
		t.Fatalf("the server's stderr is not in the log:\n%.300s", out)
	}
}

// TestZygoteReportsEveryShortRun: many runs that end within moments of
// their start, a few at once and in rounds, each reported at once. A
// server that reaped by a Python signal handler could miss the SIGCHLD
// of a run that ended just before it blocked for the next request (a
// stand-alone reproduction of that pattern missed 5 of 3000, RATIONALE),
// and a round's last run would then wait for its deadline; this load
// catches that only by chance, but every run here must be reported well
// inside its deadline whatever the cause.
func TestZygoteReportsEveryShortRun(t *testing.T) {
	r := requireRunner(t)
	z := startZygote(t, r)
	l := limits.Defaults()
	l.Timeout = limits.Duration(30 * time.Second)
	l.CPUTime = l.Timeout
	const runs, conc = 300, 4
	ctl, _ := json.Marshal(map[string]any{"entry": "main.py", "args": []string{}, "env": map[string]string{}})
	one := func(i int) error {
		ws, err := r.NewWorkspace(l.Tmpfs)
		if err != nil {
			return err
		}
		defer ws.Close()
		// Some end at once, some after a few hundred microseconds: the
		// ends land at every point of the server's loop.
		code := fmt.Sprintf("import time\nt = time.perf_counter() + %d / 1e6\nwhile time.perf_counter() < t: pass\n", (i*37)%500)
		if err := ws.WriteFile(run.File{Name: "main.py", Content: []byte(code)}); err != nil {
			return err
		}
		h, err := activateHeld(t.Context(), r, z, ws, l, ctl)
		if err != nil {
			return err
		}
		start := time.Now()
		res, err := h.Wait()
		if err != nil {
			return err
		}
		if took := time.Since(start); res.Status != run.StatusOK || took > 15*time.Second {
			return fmt.Errorf("%s after %s: %s %q", res.Status, took, res.Reason, res.Stderr)
		}
		return nil
	}
	// In rounds: a round's last run to end has no later request behind
	// it to wake a server that missed its end.
	for round := 0; round < runs; round += conc {
		errs := make([]error, conc)
		var wg sync.WaitGroup
		for j := range conc {
			wg.Go(func() { errs[j] = one(round + j) })
		}
		wg.Wait()
		for j, err := range errs {
			if err != nil {
				t.Errorf("run %d: %v", round+j, err)
			}
		}
	}
}
