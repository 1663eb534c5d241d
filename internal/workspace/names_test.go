package workspace

import (
	"errors"
	"path"
	"strings"
	"testing"
)

func TestCleanName(t *testing.T) {
	good := []string{strings.Repeat("d/", MaxDepth) + "f", strings.Repeat("x", MaxComponentBytes), "main.py", "data/x.csv", "a/b/c.txt", ".hidden", "x..y", "..x"}
	bad := []string{strings.Repeat("d/", MaxDepth+1) + "f", strings.Repeat("x", MaxComponentBytes+1), "a/" + strings.Repeat("x", MaxComponentBytes+1) + "/b", "", "/etc/passwd", "../x", "a/../../x", "a/../b", "./a", "a//b", "a/", ".", "..", "a\x00b", `a\b`, ".sandboxd/bin/program", ".sandboxd", strings.Repeat("a", 4097)}
	for _, n := range good {
		if _, err := CleanName(n); err != nil {
			t.Errorf("CleanName(%q) = %v, want ok", n, err)
		}
	}
	for _, n := range bad {
		if _, err := CleanName(n); !errors.Is(err, ErrBadFileName) {
			t.Errorf("CleanName(%q) = %v, want ErrBadFileName", n, err)
		}
	}
}

// FuzzCleanName: whatever a client sends, an accepted name stays inside
// the workspace and is returned unchanged.
func FuzzCleanName(f *testing.F) {
	for _, s := range []string{"main.py", "../x", "a/./b", "/abs", "a/b/../../..", ".sandboxd/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		got, err := CleanName(name)
		if err != nil {
			return
		}
		if got != name {
			t.Fatalf("CleanName(%q) rewrote it to %q", name, got)
		}
		joined := path.Join("/workspace", name)
		if !strings.HasPrefix(joined, "/workspace/") {
			t.Fatalf("accepted %q leaves the workspace: %s", name, joined)
		}
		if strings.HasPrefix(name, ReservedDir) && (len(name) == len(ReservedDir) || name[len(ReservedDir)] == '/') {
			t.Fatalf("accepted the reserved %q", name)
		}
	})
}

// TestDeepNameIsCheap: the 2000-deep name that once cost seconds of
// daemon CPU to place is refused by its depth, with the bound named.
func TestDeepNameIsCheap(t *testing.T) {
	_, err := CleanName(strings.Repeat("a/", 2000) + "f")
	if !errors.Is(err, ErrBadFileName) || !strings.Contains(err.Error(), "deeper than 32 directories") || len(err.Error()) > 1024 {
		t.Errorf("a 2000-deep name: %v", err)
	}
}
