package pool

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/isolate"
	"github.com/sandboxd/sandboxd/internal/isolate/nsinit"
	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/runtimes"
	"github.com/sandboxd/sandboxd/internal/testenv"
	"github.com/sandboxd/sandboxd/internal/workspace"
)

func TestMain(m *testing.M) {
	nsinit.MaybeRun()
	os.Exit(m.Run())
}

func newPool(t *testing.T, size int) (*Pool, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("requires root for the process backend")
	}
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		testenv.MissingFile(t, "/usr/bin/python3")
	}
	state, parent := testenv.StateDir(t, "pooltest")
	r, err := isolate.New(isolate.Config{StateDir: state, CgroupParent: parent})
	if err != nil {
		testenv.MissingSandbox(t, err)
	}
	rt, _ := runtimes.Default().Lookup("python")
	argv, files := rt.Warm.Argv(rt), []run.File{rt.Warm.File()}
	p := New(t.Context(), r, Config{Size: size, Argv: argv, Files: files, Limits: limits.Defaults()})
	return p, state
}

func waitReady(t *testing.T, p *Pool, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for p.Stats().Ready < n {
		if time.Now().After(deadline) {
			t.Fatalf("pool never had %d ready: %+v", n, p.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func runDirs(t *testing.T, state string) []string {
	t.Helper()
	ents, _ := os.ReadDir(filepath.Join(state, "runs"))
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// TestPoolTakeRefillClose: the pool fills to its size, a take is a hit and
// is refilled, an empty pool is a miss (never a wait), and Close leaves no
// sandbox behind.
func TestPoolTakeRefillClose(t *testing.T) {
	p, state := newPool(t, 2)
	waitReady(t, p, 2)
	e1, e2 := p.Take(), p.Take()
	if e1 == nil || e2 == nil {
		t.Fatal("a full pool of 2 gave no entry")
	}
	// Refilling takes tens of ms, so the pool is empty now: a miss, at once.
	start := time.Now()
	e3 := p.Take()
	if took := time.Since(start); took > 100*time.Millisecond {
		t.Errorf("Take on an empty pool waited %v", took)
	}
	st := p.Stats()
	if e3 != nil {
		e3.Close()
		t.Logf("the refiller was quicker than the third take: %+v", st)
	} else if st.Misses != 1 {
		t.Errorf("an empty take was not counted as a miss: %+v", st)
	}
	if st.Hits < 2 {
		t.Errorf("stats %+v", st)
	}
	for _, e := range []*Entry{e1, e2} {
		if err := e.Close(); err != nil {
			t.Error(err)
		}
	}
	waitReady(t, p, 2) // refilled
	if p.Stats().LastRefill <= 0 {
		t.Error("no refill time recorded")
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if dirs := runDirs(t, state); len(dirs) != 0 {
		t.Errorf("Close left run dirs: %v", dirs)
	}
}

// TestPoolEntryServesItsRun: an entry runs the code it is given, once.
func TestPoolEntryServesItsRun(t *testing.T) {
	p, _ := newPool(t, 1)
	defer p.Close()
	waitReady(t, p, 1)
	e := p.Take()
	defer e.Close()
	if err := e.Workspace.WriteFile(runFile("main.py", "print('from the pool')")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := e.Process.Activate(ctx, isolate.Activation{Limits: limits.Defaults(), Control: []byte(`{"entry":"main.py","args":[],"env":{}}`)}); err != nil {
		t.Fatal(err)
	}
	res, err := e.Process.Wait()
	if err != nil || string(res.Stdout) != "from the pool\n" {
		t.Fatalf("%v %q %q", err, res.Stdout, res.Stderr)
	}
	if err := e.Process.Activate(ctx, isolate.Activation{Limits: limits.Defaults()}); err == nil {
		t.Error("an entry took a second run")
	}
}

// TestPoolRunnerNotInArgv: the runner's source is not its argv (which
// every process listing of the host shows): the run, which executes in
// the runner's process, sees a short command line naming the runner's
// file, and the file is not among the run's produced files.
func TestPoolRunnerNotInArgv(t *testing.T) {
	p, _ := newPool(t, 1)
	defer p.Close()
	waitReady(t, p, 1)
	e := p.Take()
	defer e.Close()
	if err := e.Workspace.WriteFile(runFile("main.py", "import sys; sys.stdout.buffer.write(open('/proc/self/cmdline', 'rb').read())")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := e.Process.Activate(ctx, isolate.Activation{Limits: limits.Defaults(), Control: []byte(`{"entry":"main.py","args":[],"env":{}}`)}); err != nil {
		t.Fatal(err)
	}
	res, err := e.Process.Wait()
	if err != nil {
		t.Fatal(err)
	}
	argv := strings.Split(strings.TrimSuffix(string(res.Stdout), "\x00"), "\x00")
	if want := []string{"/usr/bin/python3", "/workspace/.sandboxd/warm/python.py"}; !slices.Equal(argv, want) {
		t.Errorf("the runner's command line is %q (stderr %q); want %q", argv, res.Stderr, want)
	}
	files, _, err := e.Workspace.Collect(workspace.CollectLimits{MaxFiles: 10, MaxFileSize: 1 << 20, MaxTotal: 1 << 20})
	if err != nil || len(files) != 0 {
		t.Errorf("produced files %v, %v; want none", files, err)
	}
}
