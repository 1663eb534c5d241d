package isolate

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"

	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/testenv"
)

func TestMemTotal(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name, content string
		want          limits.Bytes
	}{
		{"ok", "MemTotal:       24683748 kB\nMemFree:        23262436 kB\n", 24683748 * limits.KiB},
		{"not first", "Foo: 1 kB\nMemTotal: 1024 kB\n", limits.MiB},
		{"no unit", "MemTotal: 1024\n", 0},
		{"missing", "MemFree: 1 kB\n", 0},
		{"garbage", "MemTotal: lots kB\n", 0},
	} {
		p := filepath.Join(dir, c.name)
		writeFiles(t, dir, map[string]string{c.name: c.content})
		got, err := memTotal(p)
		if got != c.want || (err == nil) != (c.want > 0) {
			t.Errorf("%s: memTotal = %s, %v; want %s", c.name, got, err, c.want)
		}
	}
}

func TestCgroupPath(t *testing.T) {
	listing := "9:name=systemd:/\n5:cpu,cpuacct:/x\n4:memory:/process_api/abc\n0::/unified/path\n"
	for _, c := range []struct{ controller, want string }{
		{"memory", "/process_api/abc"}, {"cpuacct", "/x"}, {"", "/unified/path"}, {"pids", ""},
	} {
		got, ok := cgroupPath(listing, c.controller)
		if got != c.want || ok != (c.want != "") {
			t.Errorf("cgroupPath(%q) = %q, %v; want %q", c.controller, got, ok, c.want)
		}
	}
}

// TestLowestLimit walks fake v1 and v2 trees from a cgroup up to the root.
func TestLowestLimit(t *testing.T) {
	v1 := t.TempDir()
	const none = "9223372036854771712\n" // v1's "no limit"
	writeFiles(t, v1, map[string]string{
		"memory.limit_in_bytes":         none,
		"a/memory.limit_in_bytes":       "2147483648\n",
		"a/b/memory.limit_in_bytes":     none,
		"a/b/c/memory.limit_in_bytes":   "4294967296\n",
		"free/memory.limit_in_bytes":    none,
		"free/up/memory.limit_in_bytes": none,
	})
	v2 := t.TempDir()
	writeFiles(t, v2, map[string]string{
		"cgroup.controllers":   "memory",
		"box/memory.max":       "max\n",
		"box/inner/memory.max": "1073741824\n",
	})
	for _, c := range []struct {
		name, root, rel, file string
		want                  limits.Bytes
		at                    string
	}{
		{"v1 ancestor is lowest", v1, "/a/b/c", "memory.limit_in_bytes", 2 * limits.GiB, "a/memory.limit_in_bytes"},
		{"v1 no limit", v1, "/free/up", "memory.limit_in_bytes", 9223372036854771712, "free/up/memory.limit_in_bytes"},
		{"v2", v2, "/box/inner", "memory.max", limits.GiB, "box/inner/memory.max"},
		{"v2 max and no root file", v2, "/box", "memory.max", 0, ""},
		{"no way out of root", v2, "/../../box", "memory.max", 0, ""},
	} {
		got, at, err := lowestLimit(c.root, c.rel, c.file)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		wantAt := ""
		if c.at != "" {
			wantAt = filepath.Join(c.root, c.at)
		}
		if got != c.want || at != wantAt {
			t.Errorf("%s: lowestLimit = %d at %q; want %d at %q", c.name, got, at, c.want, wantAt)
		}
	}
	writeFiles(t, v2, map[string]string{"bad/memory.max": "lots\n"})
	if _, _, err := lowestLimit(v2, "/bad", "memory.max"); err == nil {
		t.Error("a limit file that holds no number went unnoticed")
	}
}

// TestHostMemory reads this host: something, and never more than
// MemTotal.
func TestHostMemory(t *testing.T) {
	n, from, err := HostMemory()
	if err != nil {
		t.Fatal(err)
	}
	total, err := memTotal("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	if n <= 0 || n > total || from == "" {
		t.Errorf("HostMemory = %s from %q, MemTotal %s", n, from, total)
	}
	t.Logf("host memory %s (%s)", n, from)
}

// TestV2LimitParentFakeFiles: on cgroup v2 the parent's memory.max is the
// budget, with the memory controller enabled above it.
func TestV2LimitParentFakeFiles(t *testing.T) {
	mnt := t.TempDir()
	writeFiles(t, mnt, map[string]string{
		"cgroup.controllers":     "cpuset cpu io memory hugetlb pids rdma misc",
		"cgroup.subtree_control": "",
	})
	d := &v2Driver{mountpoint: mnt, parent: "/sandboxd"}
	if err := d.limitParent(int64(3 * limits.GiB)); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(mnt, "sandboxd", "memory.max")); got != "3221225472" {
		t.Errorf("parent memory.max = %q, want 3221225472", got)
	}
	if got := readFile(t, filepath.Join(mnt, "cgroup.subtree_control")); !strings.Contains(got, "memory") {
		t.Errorf("root subtree_control %q does not enable memory for the parent", got)
	}
}

// TestV1LimitParentFakeFiles: memory and memsw both set, use_hierarchy
// turned on where it is off.
func TestV1LimitParentFakeFiles(t *testing.T) {
	root := t.TempDir()
	d := &v1Driver{parent: "/sandboxd", roots: map[cgroup1.Name]string{cgroup1.Memory: root}}
	writeFiles(t, root, map[string]string{
		"sandboxd/memory.use_hierarchy":        "0\n",
		"sandboxd/memory.limit_in_bytes":       "9223372036854771712\n",
		"sandboxd/memory.memsw.limit_in_bytes": "9223372036854771712\n",
	})
	if err := d.limitParent(int64(512 * limits.MiB)); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{
		"memory.use_hierarchy":        "1",
		"memory.limit_in_bytes":       "536870912",
		"memory.memsw.limit_in_bytes": "536870912",
	} {
		if got := readFile(t, filepath.Join(root, "sandboxd", file)); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
}

// requireV1 skips unless this host's controllers are on cgroup v1 and the
// test is root.
func requireV1(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("requires root to create cgroups")
	}
	if cgroups.Mode() == cgroups.Unified {
		t.Skip("requires the memory controller on cgroup v1 (this host is unified v2; TestV2LimitParentFakeFiles covers v2)")
	}
}

// TestV1LimitParentReal sets, lowers and raises the parent's limit on the
// host's real v1 hierarchy, where the kernel refuses memsw below memory at
// any step.
func TestV1LimitParentReal(t *testing.T) {
	requireV1(t)
	_, parent := testenv.StateDir(t, "limit")
	d, err := newV1Driver(parent)
	if err != nil {
		t.Fatal(err)
	}
	dir := d.dir(cgroup1.Memory, d.parent)
	_, hasSwap := os.Stat(filepath.Join(dir, "memory.memsw.limit_in_bytes"))
	for _, limit := range []limits.Bytes{256 * limits.MiB, 128 * limits.MiB, 512 * limits.MiB} {
		if err := d.limitParent(int64(limit)); err != nil {
			t.Fatalf("limit %s: %v", limit, err)
		}
		want := strconv.FormatInt(int64(limit), 10)
		if got := readFile(t, filepath.Join(dir, "memory.limit_in_bytes")); got != want {
			t.Errorf("after limit %s: memory.limit_in_bytes = %s", limit, got)
		}
		if hasSwap == nil {
			if got := readFile(t, filepath.Join(dir, "memory.memsw.limit_in_bytes")); got != want {
				t.Errorf("after limit %s: memory.memsw.limit_in_bytes = %s", limit, got)
			}
		}
		if got := readFile(t, filepath.Join(dir, "memory.use_hierarchy")); got != "1" {
			t.Errorf("memory.use_hierarchy = %s: the limit does not cover the runs", got)
		}
	}
}

// TestParentLimitHoldsRuns is the second line at work: a run whose own
// limit would let it take 256MiB is stopped at the parent's 64MiB, and a
// run that fits still runs after it (the bystander).
func TestParentLimitHoldsRuns(t *testing.T) {
	requireV1(t)
	state, parent := testenv.StateDir(t, "parentlimit")
	r, err := New(Config{StateDir: state, CgroupParent: parent, MemoryLimit: 64 * limits.MiB})
	if err != nil {
		testenv.MissingSandbox(t, err)
	}
	big := runPython(t, r, "x=[]\nwhile len(x) < 12: x.append(bytearray(16<<20))\nprint('took 192MiB')", limits.Limits{Memory: 256 * limits.MiB}, "")
	if big.Status == run.StatusOK || strings.Contains(string(big.Stdout), "took") {
		t.Errorf("a run took 192MiB under a parent limited to 64MiB: %s %s", big.Status, big.Stdout)
	}
	if big.Status != run.StatusMemoryLimit || !strings.Contains(big.Reason, "all sandboxes together") {
		t.Errorf("the greedy run: %s %q, want memory_limit blaming the limit of all sandboxes", big.Status, big.Reason)
	}
	if big.PeakMemory > int64(64*limits.MiB) {
		t.Errorf("the run's peak memory %s passed the parent's 64MiB", limits.Bytes(big.PeakMemory))
	}
	t.Logf("the greedy run: status %s, reason %q, peak %s", big.Status, big.Reason, limits.Bytes(big.PeakMemory))
	small := runPython(t, r, "print(sum(range(10)))", limits.Limits{Memory: 256 * limits.MiB}, "")
	if small.Status != run.StatusOK || string(small.Stdout) != "45\n" {
		t.Errorf("a small run after it: %s %q %q", small.Status, small.Stdout, small.Stderr)
	}
}
