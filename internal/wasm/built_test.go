package wasm

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// fakeBuilt makes the files of interpreter names in a new runtimes
// directory, empty: Built only looks for them.
func fakeBuilt(t *testing.T, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range names {
		in, _ := LookupInterpreter(name)
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, in.Path)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, in.Path), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, m := range in.ReadOnly {
			if err := os.MkdirAll(filepath.Join(dir, m.Host), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

func TestBuilt(t *testing.T) {
	python := fakeBuilt(t, "python")
	// The .wasm without its stdlib is not built.
	noLib := fakeBuilt(t, "python")
	if err := os.RemoveAll(filepath.Join(noLib, "python", "lib")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, dir, interp string
		want              error // nil: built
	}{
		{"nothing built", t.TempDir(), "python", ErrNotBuilt},
		{"python built", python, "python", nil},
		{"python built, not quickjs", python, "quickjs", ErrNotBuilt},
		{"both built", fakeBuilt(t, "python", "quickjs"), "quickjs", nil},
		{"no stdlib", noLib, "python", ErrNotBuilt},
		{"not an interpreter", python, "python.wasm", ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Built(tc.dir, tc.interp)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("Built(%s) = %v, want %v", tc.interp, err, tc.want)
			}
		})
	}
}

func TestRuntimesDir(t *testing.T) {
	t.Setenv(RuntimesDirEnv, "")
	if got := RuntimesDir(""); got != DefaultRuntimesDir {
		t.Errorf("RuntimesDir(\"\") = %q, want %q", got, DefaultRuntimesDir)
	}
	t.Setenv(RuntimesDirEnv, "/env")
	for in, want := range map[string]string{"": "/env", "/given": "/given"} {
		if got := RuntimesDir(in); got != want {
			t.Errorf("RuntimesDir(%q) with $%s=/env: %q, want %q", in, RuntimesDirEnv, got, want)
		}
	}
}
