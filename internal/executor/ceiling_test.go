package executor

import (
	"strings"
	"testing"

	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
)

// TestCeilingOwner: a limit above the ceiling is blamed on whoever set
// it: the server, or sandboxctl running sandboxes itself.
func TestCeilingOwner(t *testing.T) {
	for _, tc := range []struct {
		owner, want, not string
	}{
		{"", "memory: 100GiB is above the server's ceiling of 4GiB", "sandboxctl"},
		{"sandboxctl", "memory: 100GiB is above the ceiling of 4GiB, the most sandboxctl allows", "server"},
	} {
		x, err := New(Options{CeilingOwner: tc.owner})
		if err != nil {
			t.Fatal(err)
		}
		spec := &run.Spec{Runtime: "python", Files: []run.File{{Name: "main.py", Content: []byte("1")}},
			Limits: limits.Limits{Memory: 100 * limits.GiB}}
		_, err = x.Plan(spec)
		x.Close()
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), tc.not) {
			t.Errorf("owner %q: Check = %v, want %q in it and no %q", tc.owner, err, tc.want, tc.not)
		}
	}
}
