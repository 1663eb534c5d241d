package testenv

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
)

// Shmem is the host's Shmem from /proc/meminfo, in bytes: every tmpfs
// page, the sandboxes' workspaces included. A test that frees a
// workspace measures its fall against a figure read before, never an
// absolute value: other tests and programs use tmpfs too.
func Shmem(t testing.TB) int64 {
	t.Helper()
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "Shmem:"); ok {
			fields := strings.Fields(rest)
			if len(fields) == 0 {
				break
			}
			kb, err := strconv.ParseInt(fields[0], 10, 64)
			if err != nil {
				t.Fatalf("/proc/meminfo: Shmem: %v", err)
			}
			return kb << 10
		}
	}
	t.Fatal("/proc/meminfo has no Shmem line")
	return 0
}
