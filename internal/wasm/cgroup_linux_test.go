package wasm

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// TestCgroupFiles drives the v2 and v1 code against fake cgroup trees: the
// limit (memsw alongside on v1), usage, OOM kills, and
// the removal of a dead runner's cgroups but not a live one's.
func TestCgroupFiles(t *testing.T) {
	for _, v2 := range []bool{true, false} {
		mount := t.TempDir()
		f := v1Files
		if v2 {
			f = v2Files
		}
		stale := filepath.Join(mount, "wasm", "999999999-1") // no such pid
		live := filepath.Join(mount, "wasm", strconv.Itoa(os.Getpid())+"-1")
		for _, d := range []string{stale, live} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		r, err := newCgroupRootAt(mount, "wasm", v2)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(stale); !os.IsNotExist(err) {
			t.Errorf("v2=%v: a dead runner's cgroup is still there: %v", v2, err)
		}
		if _, err := os.Stat(live); err != nil {
			t.Errorf("v2=%v: a live runner's cgroup was removed: %v", v2, err)
		}
		c, err := r.create("w")
		if err != nil {
			t.Fatal(err)
		}
		write := func(name, val string) {
			if err := os.WriteFile(filepath.Join(c.dir, name), []byte(val), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		write(f.limit, "max\n")
		write(f.swap, "max\n")
		write(f.usage, "1234\n")
		write(f.events, "oom 3\noom_kill 2\n")
		if err := c.setLimit(5 << 20); err != nil {
			t.Fatal(err)
		}
		want := []string{f.limit}
		if !v2 {
			want = append(want, f.swap) // v2: swap.max is 0 from create on
		}
		for _, name := range want {
			b, _ := os.ReadFile(filepath.Join(c.dir, name))
			if string(b) != "5242880" {
				t.Errorf("v2=%v: %s = %q, want 5242880", v2, name, b)
			}
		}
		if n, err := c.usage(); err != nil || n != 1234 {
			t.Errorf("v2=%v: usage %d, %v", v2, n, err)
		}
		if n, err := c.oomKills(); err != nil || n != 2 {
			t.Errorf("v2=%v: oom kills %d, %v", v2, n, err)
		}
	}
}
