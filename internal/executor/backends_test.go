package executor

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/testenv"
	"github.com/sandboxd/sandboxd/internal/wasm"
)

// TestBothBackends runs the same specs on the process and the wasm
// backend: one contract, the same statuses and results.
func TestBothBackends(t *testing.T) {
	x := processExecutor(t)
	py := func(code string) []run.File { return []run.File{{Name: "main.py", Content: []byte(code)}} }
	cases := []struct {
		name   string
		spec   run.Spec
		status run.Status
		check  func(t *testing.T, r *run.Result)
	}{
		{"hello", run.Spec{Files: py("print('hello')")}, run.StatusOK, func(t *testing.T, r *run.Result) {
			if string(r.Stdout) != "hello\n" {
				t.Errorf("stdout %q", r.Stdout)
			}
		}},
		{"stdin", run.Spec{Files: py("import sys; print(sys.stdin.read().upper())"), Stdin: []byte("abc")}, run.StatusOK, func(t *testing.T, r *run.Result) {
			if string(r.Stdout) != "ABC\n" {
				t.Errorf("stdout %q", r.Stdout)
			}
		}},
		{"exit code and stderr apart", run.Spec{Files: py("import sys; print('out'); sys.stderr.write('err'); sys.exit(3)")}, run.StatusExited, func(t *testing.T, r *run.Result) {
			if r.ExitCode != 3 || string(r.Stdout) != "out\n" || string(r.Stderr) != "err" {
				t.Errorf("exit %d stdout %q stderr %q", r.ExitCode, r.Stdout, r.Stderr)
			}
		}},
		{"output limit", run.Spec{Files: py("import sys\nwhile True: sys.stdout.write('x'*65536)"), Limits: limits.Limits{Output: 100 * limits.KiB}}, run.StatusOutputLimit, func(t *testing.T, r *run.Result) {
			if len(r.Stdout) != 100<<10 || !r.StdoutTruncated {
				t.Errorf("stdout %d bytes truncated %v", len(r.Stdout), r.StdoutTruncated)
			}
		}},
		{"timeout", run.Spec{Files: py("while True: pass"), Limits: limits.Limits{Timeout: limits.Duration(time.Second)}}, run.StatusTimeout, nil},
		{"memory limit", run.Spec{Files: py("x=[]\nwhile True: x.append(bytearray(16<<20))"), Limits: limits.Limits{Memory: 64 * limits.MiB}}, run.StatusMemoryLimit, nil},
		{"files come back", run.Spec{Files: py("open('out.txt','w').write('made')")}, run.StatusOK, func(t *testing.T, r *run.Result) {
			if len(r.Files) != 1 || r.Files[0].Name != "out.txt" || string(r.Files[0].Content) != "made" {
				t.Errorf("files %+v", r.Files)
			}
		}},
		{"host secret unreadable", run.Spec{Files: py("try:\n    open('/etc/shadow').read(); print('ESCAPED')\nexcept OSError: print('blocked')")}, run.StatusOK, func(t *testing.T, r *run.Result) {
			if strings.TrimSpace(string(r.Stdout)) != "blocked" {
				t.Errorf("the host's /etc/shadow is readable: %q", r.Stdout)
			}
		}},
		{"no network", run.Spec{Files: py("import socket\ntry:\n    socket.create_connection(('1.1.1.1', 53), timeout=1); print('ESCAPED')\nexcept Exception as e: print('blocked')")}, run.StatusOK, func(t *testing.T, r *run.Result) {
			if strings.TrimSpace(string(r.Stdout)) != "blocked" {
				t.Errorf("network reachable: %q %q", r.Stdout, r.Stderr)
			}
		}},
	}
	for _, backend := range []run.Backend{run.BackendProcess, run.BackendWasm} {
		t.Run(string(backend), func(t *testing.T) {
			if backend == run.BackendWasm {
				warmWasm(t, x)
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					spec := c.spec
					spec.Backend = backend
					ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
					defer cancel()
					res, err := run.Do(ctx, x, &spec, run.Stream{})
					if errors.Is(err, ErrUnavailable) && backend == run.BackendWasm {
						testenv.MissingWasmRuntimes(t, err)
					}
					if err != nil {
						t.Fatal(err)
					}
					if res.Isolation.Backend != backend {
						t.Errorf("ran on %s", res.Isolation.Backend)
					}
					if res.Status != c.status {
						t.Fatalf("status %s (%s), want %s; stderr %q", res.Status, res.Reason, c.status, res.Stderr)
					}
					if c.check != nil {
						c.check(t, res)
					}
				})
			}
		})
	}
}

// TestWasmModuleEnviron: a .wasm module gets exactly the caller's
// variables in its WASI environment, as a WASI runtime gives it (the
// environ tests of WebAssembly's wasi-testsuite), none of an interpreter's
// defaults (HOME, PYTHONUNBUFFERED, OMP_NUM_THREADS).
func TestWasmModuleEnviron(t *testing.T) {
	module, err := os.ReadFile("../wasm/testdata/environ.wasm")
	if err != nil {
		t.Fatal(err)
	}
	x, err := New(Options{Wasm: wasm.Config{NoDiskCache: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{nil, ""},
		{map[string]string{"B": "two", "A": "1"}, "A=1\nB=two\n"},
	} {
		res, err := run.Do(t.Context(), x, &run.Spec{Files: []run.File{{Name: "environ.wasm", Content: module}}, Env: tc.env}, run.Stream{})
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != run.StatusOK || string(res.Stdout) != tc.want {
			t.Errorf("env %v: status %s environ %q, want %q (stderr %s)", tc.env, res.Status, res.Stdout, tc.want, res.Stderr)
		}
	}
}

// warmWasm has the wasm backend compile python.wasm, with minutes to do
// it, before the cases: on a cold cache (a test binary's wazero cache is
// its own, "dev") and a loaded machine the compilation takes longer than a
// case's 10 s, and the first case would time out waiting for it. What a
// run does while an interpreter compiles is internal/wasm's
// TestInterpreterCompileOutlivesRunDeadline.
func warmWasm(t *testing.T, x *Executor) {
	t.Helper()
	spec := run.Spec{Backend: run.BackendWasm, Files: []run.File{{Name: "main.py", Content: []byte("print(1)")}},
		Limits: limits.Limits{Timeout: limits.Duration(5 * time.Minute)}}
	res, err := run.Do(t.Context(), x, &spec, run.Stream{})
	if errors.Is(err, ErrUnavailable) {
		testenv.MissingWasmRuntimes(t, err)
	}
	if err != nil || res.Status != run.StatusOK {
		t.Fatalf("warming the wasm backend: %v, status %s (%s)", err, res.Status, res.Reason)
	}
}
