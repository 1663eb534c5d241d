package isolate

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/testenv"
)

// requireRunner returns a Runner, or skips without root; as root, a host
// without user namespaces or cgroups fails (testenv.MissingSandbox). CI is
// root.
//
// Its runs start the init binary TestMain built (testInit);
// requireRunnerInit chooses another init.
func requireRunner(t testing.TB) *Runner {
	t.Helper()
	r := requireRunnerInit(t, testInit)
	if want := initKindBinary; r.InitKind() != want {
		t.Fatalf("the runner starts init as %q, want %q (the init binary TestMain built)", r.InitKind(), want)
	}
	return r
}

// requireRunnerInit is requireRunner with Config.Init set to init.
func requireRunnerInit(t testing.TB, init string) *Runner {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("requires root: the process backend creates cgroups and maps uids")
	}
	state, parent := testenv.StateDir(t, "test")
	// The spawner, as the daemon's runner: sandboxctl's, without it, is
	// TestInitBinaryAndFallback's "direct" case and the tests/ suite's.
	r, err := New(Config{StateDir: state, CgroupParent: parent, Init: init, Spawner: true})
	if err != nil {
		testenv.MissingSandbox(t, err)
	}
	return r
}

// runPython runs code with /usr/bin/python3 in a fresh workspace and
// returns the result.
func runPython(t *testing.T, r *Runner, code string, l limits.Limits, stdin string) *run.Result {
	t.Helper()
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		testenv.MissingFile(t, "/usr/bin/python3")
	}
	ws, err := r.NewWorkspace(l.Merge(limits.Defaults()).Tmpfs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ws.Close(); err != nil {
			t.Errorf("close workspace: %v", err)
		}
	})
	if err := ws.WriteFile(run.File{Name: "main.py", Content: []byte(code)}); err != nil {
		t.Fatal(err)
	}
	e := Exec{
		Argv:   []string{"/usr/bin/python3", "main.py"},
		Env:    []string{"PATH=/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE=1"},
		Limits: l.Merge(limits.Defaults()),
	}
	if stdin != "" {
		e.Stdin = stringsReader(stdin)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := r.Run(ctx, ws, e)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	return res
}
