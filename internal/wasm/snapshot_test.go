package wasm

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sandboxd/sandboxd/internal/run"
)

var (
	coldOnce   sync.Once
	coldRunner *Runner
)

// coldStarts is a runner whose interpreters always start cold, the
// reference a run from a snapshot must match. In process: a second
// runner's workers would take the shared worker runner's uids.
func coldStarts(t *testing.T) *Runner {
	t.Helper()
	coldOnce.Do(func() {
		r, err := New(context.Background(), Config{
			Mode: ModeInProcess, ColdStarts: true,
			CacheDir: filepath.Join(os.TempDir(), "sandboxd-wasm-test-cache"),
			Logger:   slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		warmInterpreters(t, r)
		coldRunner = r
	})
	if coldRunner == nil {
		t.Fatal("no cold runner")
	}
	return coldRunner
}

// sameAsCold runs e from a snapshot (twice: the second run shares the
// first's snapshot) and cold, each with stdin, and requires the same
// results; warm says whether the snapshot runs must have started from one.
func sameAsCold(t *testing.T, r *Runner, e Exec, stdin string, warm bool) *run.Result {
	t.Helper()
	e.Stdin = strings.NewReader(stdin)
	cold := mustRun(t, coldStarts(t), e)
	if cold.Isolation.Warm {
		t.Fatalf("a ColdStarts runner's run started from a snapshot")
	}
	var res *run.Result
	for i := range 2 {
		e.Stdin = strings.NewReader(stdin)
		res = mustRun(t, r, e)
		if res.Isolation.Warm != warm {
			t.Errorf("run %d: started from a snapshot: %v, want %v\n%s", i, res.Isolation.Warm, warm, summary(res))
		}
		if res.Status != cold.Status || res.ExitCode != cold.ExitCode ||
			!bytes.Equal(res.Stdout, cold.Stdout) || !bytes.Equal(res.Stderr, cold.Stderr) {
			t.Errorf("run %d differs from the cold run:\n%s\ncold:\n%s", i, summary(res), summary(cold))
		}
		if len(res.Files) != len(cold.Files) {
			t.Errorf("run %d produced %d files, the cold run %d", i, len(res.Files), len(cold.Files))
		}
	}
	return res
}

// TestSnapshotSameAsCold: a Python run that starts from a snapshot of the
// interpreter's start-up sees what a cold one sees (argv, sys.path, the
// environment, flags, modules, stdin, exit status, errors), nothing that
// an earlier run from the same snapshot did, and it starts cold wherever
// the start-up could have gone otherwise.
func TestSnapshotSameAsCold(t *testing.T) {
	requireRuntime(t, "python")
	const probe = `import sys, os
print(sys.argv, sys.orig_argv)
print(sys.path)
print(os.getcwd(), sorted(os.listdir(".")))
print(sorted(os.environ.items()))
print(sys.flags)
print(sys.executable, sys.prefix, sys.exec_prefix)
print(sorted(sys.modules))
print(repr(sys.stdin.read()))
# What an earlier run left would show here.
print(hasattr(sys, "left_behind"), os.environ.get("LEFT"), len(sys.path_importer_cache))
sys.left_behind = True
os.environ["LEFT"] = "1"
__builtins__.len = None
with open("out.txt", "w") as f:
    f.write("x")
raise SystemExit(3)
`
	eachMode(t, func(t *testing.T, r *Runner) {
		t.Run("script", func(t *testing.T) {
			e := script("python", "main.py", probe)
			e.Argv = append(e.Argv, "one", "two")
			res := sameAsCold(t, r, e, "input\n", true)
			if res.ExitCode != 3 || !strings.Contains(string(res.Stdout), "'input\\n'") {
				t.Errorf("the probe did not run as written:\n%s", summary(res))
			}
		})
		t.Run("another environment", func(t *testing.T) {
			e := script("python", "main.py", probe)
			e.Env = append(e.Env, "FOO=bar")
			sameAsCold(t, r, e, "", true)
		})
		t.Run("exception", func(t *testing.T) {
			res := sameAsCold(t, r, script("python", "main.py", "import json\nprint('before')\n1/0\n"), "", true)
			if res.ExitCode != 1 || !strings.Contains(string(res.Stderr), "ZeroDivisionError") {
				t.Errorf("want exit 1 and the traceback:\n%s", summary(res))
			}
		})
		t.Run("-c", func(t *testing.T) {
			e := script("python", "main.py", "")
			e.Argv = []string{"python", "-c", "import sys; print(sys.argv, sys.path[0])", "arg"}
			sameAsCold(t, r, e, "", true)
		})
		t.Run("-m with stdin", func(t *testing.T) {
			e := script("python", "main.py", "")
			e.Argv = []string{"python", "-m", "json.tool"}
			res := sameAsCold(t, r, e, `{"a": [1, 2]}`, true)
			if !strings.Contains(string(res.Stdout), `"a": [`) {
				t.Errorf("json.tool printed:\n%s", summary(res))
			}
		})
		// The start-up exits: nothing to snapshot.
		t.Run("--version", func(t *testing.T) {
			e := script("python", "main.py", "")
			e.Argv = []string{"python", "--version"}
			res := sameAsCold(t, r, e, "", false)
			if !strings.HasPrefix(string(res.Stdout), "Python 3.") {
				t.Errorf("--version printed:\n%s", summary(res))
			}
		})
		// getpath looks for pyvenv.cfg in the workspace ("/" is the
		// workspace too): a run that has one starts cold, and sees it.
		t.Run("a file the start-up looks for", func(t *testing.T) {
			e := script("python", "main.py", "import sys\nprint(sys.prefix, sys.path)\n")
			e.Files = append(e.Files, run.File{Name: "pyvenv.cfg", Content: []byte("home = /usr/local/bin\n")})
			sameAsCold(t, r, e, "", false)
		})
		// The open-file cap counts the same: the start-up's use of the
		// mounts (their roots, opened lazily) is not the run's.
		t.Run("open files limit", func(t *testing.T) {
			e := script("python", "main.py", "fs = []\ntry:\n    while True:\n        fs.append(open('main.py'))\nexcept OSError as e:\n    print(len(fs), e)\n")
			e.Limits.OpenFiles = 16
			res := sameAsCold(t, r, e, "", true)
			if !strings.HasPrefix(string(res.Stdout), "16 ") {
				t.Errorf("want 16 files opened:\n%s", summary(res))
			}
		})
		// The memory limit holds from a snapshot as from a cold start.
		t.Run("memory limit", func(t *testing.T) {
			e := script("python", "main.py", "x = bytearray(64 << 20)\n")
			e.Limits.Memory = 32 << 20
			res := sameAsCold(t, r, e, "", true)
			if res.Status != run.StatusMemoryLimit {
				t.Errorf("want memory_limit:\n%s", summary(res))
			}
		})
	})
}

// TestSnapshotNotForClientModules: a client's module that exports the
// snapshot's entry points still starts cold every run, by path or
// uploaded: what its start-up draws (drawn.wasm: 16 random bytes) must
// stay each run's. The same module run with snapshots allowed (the
// control) prints the same bytes twice, so the test can tell.
func TestSnapshotNotForClientModules(t *testing.T) {
	b, err := os.ReadFile(testdata("drawn.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	eachMode(t, func(t *testing.T, r *Runner) {
		for _, e := range []Exec{
			{Module: testdata("drawn.wasm"), Argv: []string{"drawn"}, Limits: testLimits()},
			{ModuleBytes: b, Argv: []string{"drawn"}, Limits: testLimits()},
		} {
			seen := map[string]bool{}
			for range 3 {
				res := mustRun(t, r, e)
				if res.Status != run.StatusOK || len(res.Stdout) != 33 || res.Isolation.Warm {
					t.Fatalf("drawn.wasm: warm %v, %s", res.Isolation.Warm, summary(res))
				}
				if seen[string(res.Stdout)] {
					t.Fatalf("two runs drew the same bytes: %s", res.Stdout)
				}
				seen[string(res.Stdout)] = true
			}
		}
	})
	// With snapshots allowed, runs share what the start-up drew, for
	// snapshotUses runs; the next one draws afresh.
	t.Run("control", func(t *testing.T) {
		r := runnerFor(t, ModeInProcess)
		cm, err := r.rt.CompileModule(context.Background(), b)
		if err != nil {
			t.Fatal(err)
		}
		var outs []string
		for range snapshotUses + 1 {
			var out bytes.Buffer
			job := &guestJob{Module: "drawn", Argv: []string{"drawn"}, Dir: t.TempDir(), Memory: 1 << 20,
				InitialMemory: 1 << 16, MaxBytes: 1 << 20, MaxFile: 1 << 20, MaxEntries: 16, MaxOpen: 8, Snapshot: true}
			end := runGuest(context.Background(), r.rt, cm, job, guestIO{stdin: bytes.NewReader(nil), stdout: &out, stderr: &out}, guestHooks{})
			if !end.Snapshot || end.Kind != endReturned {
				t.Fatalf("with snapshots allowed: snapshot %v, end %+v, output %q", end.Snapshot, end, out.String())
			}
			outs = append(outs, out.String())
		}
		for i, o := range outs[:snapshotUses] {
			if o != outs[0] {
				t.Fatalf("run %d from the first snapshot drew other bytes (%q, %q): the test above cannot tell", i, outs[0], o)
			}
		}
		if outs[snapshotUses] == outs[0] {
			t.Fatalf("run %d still started from the first snapshot", snapshotUses)
		}
	})
}
