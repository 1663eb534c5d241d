package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunAboveCeiling: a local run's limit above the ceiling is
// sandboxctl's to refuse, not a server's.
func TestRunAboveCeiling(t *testing.T) {
	path := filepath.Join(t.TempDir(), "main.py")
	if err := os.WriteFile(path, []byte("print('ran')\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		flags []string
		want  string
	}{
		{[]string{"--memory", "100GiB"}, "memory: 100GiB is above the ceiling of 4GiB, the most sandboxctl allows"},
		{[]string{"--timeout", "1h"}, "timeout: 1h0m0s is above the ceiling of 5m0s, the most sandboxctl allows"},
	} {
		out, errOut, code := sandboxctl(t, "", append(append([]string{"run"}, tc.flags...), path)...)
		if code != ExitSandboxError || !strings.Contains(errOut, tc.want) || strings.Contains(errOut, "server") || out != "" {
			t.Errorf("run %v: exit %d, stdout %q, stderr %q; want %d and %q", tc.flags, code, out, errOut, ExitSandboxError, tc.want)
		}
	}
}
