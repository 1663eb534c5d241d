package cli

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sandboxd/sandboxd/internal/wasm"
)

// wasmDir is a runtimes directory where the interpreters named are built
// (their files exist, empty: only their presence is checked).
func wasmDir(t *testing.T, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range names {
		in, ok := wasm.LookupInterpreter(name)
		if !ok {
			t.Fatalf("no interpreter %s", name)
		}
		p := filepath.Join(dir, in.Path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
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

// TestRuntimesBackends: sandboxctl runtimes lists wasm for a runtime only
// when its interpreter is built.
func TestRuntimesBackends(t *testing.T) {
	for _, tc := range []struct {
		name  string
		built []string
		wasm  map[string]bool
	}{
		{"none built", nil, map[string]bool{"python": false, "javascript": false}},
		{"python built", []string{"python"}, map[string]bool{"python": true, "javascript": false}},
		{"both built", []string{"python", "quickjs"}, map[string]bool{"python": true, "javascript": true}},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			t.Setenv(wasm.RuntimesDirEnv, wasmDir(t, tc.built...))
			out, errOut, code := sandboxctl(t, "", "runtimes")
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			for rt, want := range tc.wasm {
				row := regexp.MustCompile(`(?m)^` + rt + ` .*$`).FindString(out)
				if row == "" {
					t.Fatalf("no row for %s:\n%s", rt, out)
				}
				if got := strings.HasSuffix(row, "wasm"); got != want {
					t.Errorf("%s lists wasm: %v, want %v:\n%s", rt, got, want, out)
				}
			}
			if bash := regexp.MustCompile(`(?m)^bash .*$`).FindString(out); strings.Contains(bash, "wasm") {
				t.Errorf("bash lists wasm: %q", bash)
			}
		})
	}
}

// TestWasmCheck: doctor says whether the interpreters are built and, when
// not, the command that builds them.
func TestWasmCheck(t *testing.T) {
	for _, tc := range []struct {
		name   string
		built  []string
		ok     bool
		detail []string
	}{
		{"none built", nil, false, []string{"not built", "python", "quickjs"}},
		{"python built", []string{"python"}, false, []string{"python built", "quickjs not"}},
		{"both built", []string{"python", "quickjs"}, true, []string{"built", "python", "quickjs"}},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			dir := wasmDir(t, tc.built...)
			c := wasmCheck(dir)
			if c.OK != tc.ok || c.Required {
				t.Errorf("ok %v required %v, want ok %v and not required", c.OK, c.Required, tc.ok)
			}
			for _, w := range append(tc.detail, dir) {
				if !strings.Contains(c.Detail, w) {
					t.Errorf("detail %q does not say %q", c.Detail, w)
				}
			}
			if hasFix := strings.Contains(c.Fix, "scripts/build-wasm-runtimes.sh"); hasFix == tc.ok {
				t.Errorf("fix %q", c.Fix)
			}
		})
	}
}
