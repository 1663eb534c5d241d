package isolate

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/isolate/nsinit"
	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/testenv"
)

// TestSpawner: with Config.Spawner, the spawner clones init (it is init's
// parent) and the run is the same; without it, this process does. When
// the spawner dies, so do the sandboxes it cloned (nothing of theirs is
// left), and the runs after it are cloned here.
func TestSpawner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("requires root: the process backend creates cgroups and maps uids")
	}
	// A binary of its own, so that its spawner is this test's alone
	// (the process's spawners are per binary).
	self, err := os.ReadFile(testInit)
	if err != nil {
		t.Skip("no init binary built:", err)
	}
	bin := filepath.Join(t.TempDir(), InitBinaryName)
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	state, parent := testenv.StateDir(t, "test")
	direct, err := New(Config{StateDir: state, CgroupParent: parent, Init: bin})
	if err != nil {
		testenv.MissingSandbox(t, err)
	}
	r := requireRunnerInit(t, bin)

	p, _ := startHeld(t, direct, limits.Defaults())
	if got := parentOf(t, p.initPid); got != os.Getpid() {
		t.Errorf("without the spawner, init's parent is %d, want this process (%d)", got, os.Getpid())
	}
	activateAndCheck(t, p)

	p, _ = startHeld(t, r, limits.Defaults())
	spawner := parentOf(t, p.initPid)
	if comm := commOf(spawner); comm != nsinit.SpawnArg0 {
		t.Fatalf("with the spawner, init's parent %d is %q, want %q", spawner, comm, nsinit.SpawnArg0)
	}
	activateAndCheck(t, p)

	p, _ = startHeld(t, r, limits.Defaults())
	if got := parentOf(t, p.initPid); got != spawner {
		t.Fatalf("the second init's parent is %d, want the spawner %d", got, spawner)
	}
	pids := []int{p.initPid, p.progPid}
	if err := syscall.Kill(spawner, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the sandbox outlived its spawner by 10s")
	}
	if res, _ := p.Wait(); res.Status == run.StatusOK {
		t.Errorf("the sandbox whose spawner died ended %s", res.Status)
	}
	for _, pid := range pids {
		if running(pid) {
			t.Errorf("process %d of the sandbox outlived its spawner", pid)
		}
	}

	// The spawner's end is seen by the next clone at the latest.
	p, _ = startHeld(t, r, limits.Defaults())
	if got := parentOf(t, p.initPid); got != os.Getpid() {
		t.Errorf("after the spawner died, init's parent is %d, want this process (%d)", got, os.Getpid())
	}
	activateAndCheck(t, p)
}

// activateAndCheck runs a line of Python in the held sandbox p and checks
// its result.
func activateAndCheck(t *testing.T, p *HeldProcess) {
	t.Helper()
	err := p.Activate(t.Context(), Activation{Limits: limits.Defaults(), Control: []byte("import os; print(os.getuid(), os.getppid())")})
	res, _ := p.Wait()
	if err != nil || res.Status != run.StatusOK || string(res.Stdout) != "1000 1\n" || res.Isolation.Init != initKindBinary {
		t.Fatalf("%v, status %s, stdout %q, init %q, reason %q; want ok, \"1000 1\" from the init binary", err, res.Status, res.Stdout, res.Isolation.Init, res.Reason)
	}
}

// parentOf is pid's parent's pid.
func parentOf(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "PPid:"); ok {
			ppid, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatal(err)
			}
			return ppid
		}
	}
	t.Fatalf("no PPid in /proc/%d/status", pid)
	return 0
}

// commOf is pid's name, "" if it is gone.
func commOf(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	return strings.TrimSpace(string(b))
}

// running says whether pid is a process that has not exited: a zombie
// has (the orphaned inits of a dead spawner are the host's PID 1's to
// reap).
func running(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || !strings.HasPrefix(string(b[i+1:]), " Z")
}

// TestCheckSpawner: doctor's spawner line starts a spawner from the init
// binary and takes its hello; without an init binary it says the daemon
// clones its sandboxes itself.
func TestCheckSpawner(t *testing.T) {
	if testInit == "" {
		t.Skip("no init binary built")
	}
	t.Setenv(InitEnv, testInit)
	if c := checkSpawner(); !c.OK {
		t.Errorf("with the init binary: %+v, want OK", c)
	}
	t.Setenv(InitEnv, InitReexec)
	if c := checkSpawner(); c.OK || !strings.Contains(c.Detail, "clones its sandboxes itself") {
		t.Errorf("without an init binary: %+v, want not OK, saying the daemon clones itself", c)
	}
}
