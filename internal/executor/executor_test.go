package executor

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/sandboxd/sandboxd/internal/isolate/nsinit"
	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/runtimes"
	"github.com/sandboxd/sandboxd/internal/testenv"
	"github.com/sandboxd/sandboxd/internal/wasm"
)

func TestMain(m *testing.M) {
	nsinit.MaybeRun()
	wasm.MaybeRun()
	os.Exit(m.Run())
}

// newPlanner returns an Executor for plan checks only: no backend.
func newPlanner() *Executor {
	return &Executor{opts: Options{Runtimes: runtimes.Default(), Defaults: limits.Defaults(), Ceiling: limits.DefaultCeiling()}}
}

func TestPlanErrors(t *testing.T) {
	x := newPlanner()
	py := []run.File{{Name: "main.py", Content: []byte("print(1)")}}
	cases := []struct {
		name string
		spec run.Spec
		is   error
		msg  string
	}{
		{"no files", run.Spec{}, ErrInvalid, "no files"},
		{"absolute name", run.Spec{Files: []run.File{{Name: "/etc/passwd"}}}, ErrInvalid, "relative"},
		{"traversal", run.Spec{Files: []run.File{{Name: "../x.py"}}}, ErrInvalid, "leave the workspace"},
		{"duplicate", run.Spec{Files: []run.File{{Name: "a.py"}, {Name: "a.py"}}}, ErrInvalid, "twice"},
		{"entry missing", run.Spec{Files: py, Entry: "other.py"}, ErrInvalid, "not one of the files"},
		{"unknown runtime", run.Spec{Files: py, Runtime: "cobol"}, runtimes.ErrUnknownRuntime, "available"},
		{"unknown extension", run.Spec{Files: []run.File{{Name: "x.cob"}}}, runtimes.ErrUnknownRuntime, ".cob"},
		{"unknown backend", run.Spec{Files: py, Backend: "vm"}, ErrInvalid, "unknown backend"},
		{"runtime without a wasm build", run.Spec{Files: []run.File{{Name: "a.sh", Content: []byte("echo")}}, Backend: run.BackendWasm}, ErrInvalid, "no wasm build"},
		{"wasm module on the process backend", run.Spec{Files: []run.File{{Name: "m.wasm"}}, Backend: run.BackendProcess}, ErrInvalid, "wasm backend"},
		{"env with =", run.Spec{Files: py, Env: map[string]string{"A=B": "c"}}, ErrInvalid, "environment variable"},
		{"arg with NUL", run.Spec{Files: py, Args: []string{"a\x00b"}}, ErrInvalid, "NUL"},
		{"memory above ceiling", run.Spec{Files: py, Limits: limits.Limits{Memory: 100 * limits.GiB}}, limits.ErrInvalid, "memory"},
		{"negative pids", run.Spec{Files: py, Limits: limits.Limits{Pids: -1}}, limits.ErrInvalid, "pids"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := x.Plan(&c.spec)
			if !errors.Is(err, c.is) || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("Check = %v; want an error wrapping %v that mentions %q", err, c.is, c.msg)
			}
		})
	}
}

func TestPlanResolves(t *testing.T) {
	x := newPlanner()
	p, err := x.plan(&run.Spec{
		Files: []run.File{{Name: "main.py"}},
		Env:   map[string]string{"LANG": "de_DE.UTF-8", "MY": "1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if p.rt.Name != "python" || p.entry != "main.py" || p.limits != limits.Defaults() {
		t.Errorf("plan %+v", p)
	}
	env := strings.Join(p.env, "\n")
	if strings.Count(env, "LANG=") != 1 || !strings.Contains(env, "LANG=de_DE.UTF-8") || !strings.Contains(env, "MY=1") {
		t.Errorf("env does not carry the spec's values once each:\n%s", env)
	}
}

// TestRunCompiled runs a C program end to end: compile step, run step and
// the compile result attached.
// processExecutor is an Executor with both backends, closed at the end
// of the test; the test skips without root.
func processExecutor(t *testing.T) *Executor {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("requires root for the process backend")
	}
	x, err := New(Options{})
	if err != nil {
		testenv.MissingSandbox(t, err)
	}
	t.Cleanup(func() { x.Close() })
	return x
}

func TestRunCompiled(t *testing.T) {
	x := processExecutor(t)
	if _, err := os.Stat("/usr/bin/gcc"); err != nil {
		testenv.MissingFile(t, "/usr/bin/gcc")
	}
	res, err := run.Do(t.Context(), x, &run.Spec{Files: []run.File{{Name: "main.c", Content: []byte("#include <stdio.h>\nint main(int c, char**v){printf(\"%s\\n\", v[1]); return 4;}\n")}}, Args: []string{"a b"}}, run.Stream{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != run.StatusExited || res.ExitCode != 4 || string(res.Stdout) != "a b\n" || res.Compile == nil || res.Compile.Status != run.StatusOK {
		t.Fatalf("result %s exit %d stdout %q compile %+v", res.Status, res.ExitCode, res.Stdout, res.Compile)
	}
	for _, f := range res.Files {
		if strings.HasPrefix(f.Name, ".sandboxd") {
			t.Errorf("the compiled binary %s is returned as a produced file", f.Name)
		}
	}
	res, err = run.Do(t.Context(), x, &run.Spec{Files: []run.File{{Name: "bad.c", Content: []byte("int main( {")}}}, run.Stream{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != run.StatusExited || res.Compile == nil || len(res.Compile.Stderr) == 0 || !strings.Contains(res.Reason, "compilation") {
		t.Fatalf("compile error: status %s reason %q compile %+v", res.Status, res.Reason, res.Compile)
	}
}
