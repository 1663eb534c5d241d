package executor

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/wasm"
)

// TestBackends: a runtime lists the wasm backend only when its WASI
// interpreter is built, and the process backend only where that works.
func TestBackends(t *testing.T) {
	pythonOnly := t.TempDir()
	for _, d := range []string{"python/lib"} {
		if err := os.MkdirAll(filepath.Join(pythonOnly, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(pythonOnly, "python/python.wasm"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		dir  string
		wasm map[string]bool // runtime: lists wasm
	}{
		{"nothing built", t.TempDir(), map[string]bool{"python": false, "javascript": false, "bash": false}},
		{"python built", pythonOnly, map[string]bool{"python": true, "javascript": false, "bash": false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x, err := New(Options{Wasm: wasm.Config{RuntimesDir: tc.dir}})
			if err != nil {
				t.Fatal(err)
			}
			defer x.Close()
			for name, wantWasm := range tc.wasm {
				rt, err := x.Runtimes().Lookup(name)
				if err != nil {
					t.Fatal(err)
				}
				got := x.Backends(rt)
				if slices.Contains(got, run.BackendWasm) != wantWasm {
					t.Errorf("%s: backends %v, want wasm: %v", name, got, wantWasm)
				}
				wantProcess := x.ProcessErr() == nil && x.Runtimes().Available(rt)
				if slices.Contains(got, run.BackendProcess) != wantProcess {
					t.Errorf("%s: backends %v, want process: %v (process backend: %v)", name, got, wantProcess, x.ProcessErr())
				}
			}
		})
	}
}
