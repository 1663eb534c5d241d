package isolate

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestIDPoolClashes: doctor finds users and subordinate ranges in the pool,
// and only those.
func TestIDPoolClashes(t *testing.T) {
	dir := t.TempDir()
	passwd := filepath.Join(dir, "passwd")
	subuid := filepath.Join(dir, "subuid")
	if err := os.WriteFile(passwd, []byte("root:x:0:0::/root:/bin/sh\nin:x:1610612800:1::/:/bin/sh\nafter:x:1879048192:1::/:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(subuid, []byte("alice:100000:65536\nbob:1610000000:1000000\ncarol:1879048192:65536\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	first, last := DefaultHostUID, DefaultHostUID+DefaultIDSlots*IDsPerSandbox-1
	if got := idsInRange(passwd, 2, first, last); !slices.Equal(got, []string{passwd + ": in"}) {
		t.Errorf("passwd clashes %q, want only user in", got)
	}
	if got := subRangesOverlapping(subuid, first, last); !slices.Equal(got, []string{subuid + ": bob"}) {
		t.Errorf("subuid clashes %q, want only bob's range", got)
	}
}
