package isolate

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"golang.org/x/sys/unix"

	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/testenv"
)

// writeFiles lays out fake cgroup files under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestV2DriverFakeFiles drives the cgroup v2 path against fake files: this
// project's machines run cgroup v1, production hosts v2.
func TestV2DriverFakeFiles(t *testing.T) {
	mnt := t.TempDir()
	writeFiles(t, mnt, map[string]string{
		"cgroup.controllers":     "cpuset cpu io memory hugetlb pids rdma misc",
		"cgroup.subtree_control": "",
		// The kernel creates these on mkdir; a fake tree has them ready.
		"sandboxd/cgroup.subtree_control": "",
	})
	d := &v2Driver{mountpoint: mnt, parent: "/sandboxd"}
	l := limits.Defaults()
	l.Memory, l.Pids, l.CPUs = 128*limits.MiB, 32, 1.5
	cg, err := d.create("run1-0", l)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(mnt, "sandboxd", "run1-0")
	for file, want := range map[string]string{
		"memory.max":      "134217728",
		"memory.swap.max": "0",
		"pids.max":        "32",
		"cpu.max":         "150000 100000",
	} {
		if got := readFile(t, filepath.Join(dir, file)); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
	if got := readFile(t, filepath.Join(mnt, "sandboxd", "cgroup.subtree_control")); !strings.Contains(got, "memory") || !strings.Contains(got, "pids") || !strings.Contains(got, "cpu") {
		t.Errorf("parent subtree_control %q does not enable memory, pids and cpu", got)
	}
	if fd, err := cg.openDir(); err != nil || fd < 0 {
		t.Errorf("v2 cgroup's directory for clone-time placement: fd %d, %v", fd, err)
	} else {
		unix.Close(fd)
	}
	writeFiles(t, dir, map[string]string{
		"memory.peak":   "73400320\n",
		"memory.events": "low 0\nhigh 0\nmax 7\noom 2\noom_kill 2\noom_group_kill 0\n",
		"cpu.stat":      "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n",
		"cgroup.procs":  "",
	})
	st, err := cg.stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.PeakMemory != 73400320 || st.OOMKills != 2 || st.CPU != 1500*time.Millisecond {
		t.Errorf("stats %+v", st)
	}
	if err := cg.kill(); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dir, "cgroup.kill")); got != "1" {
		t.Errorf("cgroup.kill = %q after kill", got)
	}
	names, err := d.list()
	if err != nil || len(names) != 1 || names[0] != "run1-0" {
		t.Errorf("list = %v, %v", names, err)
	}
	// A fake directory full of files cannot be rmdir'ed; only check that
	// destroy closes the fd and reports the failure instead of hiding it.
	if err := cg.destroy(); err == nil {
		t.Error("destroy of a non-empty fake dir reported success")
	}
}

// TestV2ClonePlacementReal places a child into a cgroup v2 group at clone
// time (CLONE_INTO_CGROUP) and kills it with cgroup.kill, on the host's real
// v2 hierarchy. On a hybrid host that hierarchy has no controllers, which
// is enough for placement, cpu.stat and cgroup.kill.
func TestV2ClonePlacementReal(t *testing.T) {
	dir := realV2Dir(t)
	c := &v2Cgroup{dir: dir}
	defer func() {
		if err := c.destroy(); err != nil {
			t.Errorf("destroy: %v", err)
		}
	}()
	fd, err := c.openDir()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/sleep", "100")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	err = cmd.Start()
	unix.Close(fd)
	if err != nil {
		t.Fatal(err)
	}
	procs := readFile(t, filepath.Join(dir, "cgroup.procs"))
	if procs != strconv.Itoa(cmd.Process.Pid) {
		t.Errorf("cgroup.procs = %q, want the child %d placed at clone", procs, cmd.Process.Pid)
	}
	if _, err := c.cpu(); err != nil {
		t.Errorf("cpu.stat: %v", err)
	}
	if err := c.kill(); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Errorf("child ended with %v, want SIGKILL from cgroup.kill", err)
	}
}

// realV2Dir makes an empty cgroup on the host's real v2 hierarchy (at
// /sys/fs/cgroup, or /sys/fs/cgroup/unified on a hybrid host) for the
// test to use and destroy, or skips saying what it requires.
func realV2Dir(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("requires root to create cgroups")
	}
	mnt := "/sys/fs/cgroup/unified"
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		mnt = "/sys/fs/cgroup"
	} else if err := unix.Statfs(mnt, &st); err != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
		t.Skip("requires a cgroup v2 hierarchy mounted at /sys/fs/cgroup or /sys/fs/cgroup/unified")
	}
	dir := filepath.Join(mnt, "sandboxd-test-"+newRunID())
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Skipf("requires a writable cgroup v2 hierarchy: %v", err)
	}
	// The test destroys it; this removes it when the test failed first.
	t.Cleanup(func() { _ = os.Remove(dir) })
	return dir
}

// TestV1StatsFakeFiles reads v1 figures from fake files.
func TestV1StatsFakeFiles(t *testing.T) {
	root := t.TempDir()
	d := &v1Driver{parent: "/sandboxd", roots: map[cgroup1.Name]string{}}
	for _, n := range v1Subsystems {
		d.roots[n] = filepath.Join(root, string(n))
	}
	c := &v1Cgroup{d: d, path: "/sandboxd/r-0"}
	writeFiles(t, d.dir("cpuacct", c.path), map[string]string{"cpuacct.usage": "2500000000\n"})
	writeFiles(t, d.dir("memory", c.path), map[string]string{
		"memory.max_usage_in_bytes": "1048576\n",
		"memory.oom_control":        "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
	})
	st, err := c.stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.CPU != 2500*time.Millisecond || st.PeakMemory != 1<<20 || st.OOMKills != 3 {
		t.Errorf("stats %+v", st)
	}
}

// TestV1TCPBufferLimitReal: a v1 run cgroup charges its TCP socket
// buffers (memory.kmem.tcp.limit_in_bytes set, to the memory limit), and a
// warm sandbox's update moves that bound with the memory limit.
func TestV1TCPBufferLimitReal(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("requires root to create cgroups")
	}
	if cgroups.Mode() == cgroups.Unified {
		t.Skip("requires cgroup v1 (v2 charges socket buffers to memory.max without a setting)")
	}
	_, parent := testenv.StateDir(t, "tcp")
	d, err := newV1Driver(parent)
	if err != nil {
		t.Fatal(err)
	}
	l := limits.Defaults()
	l.Memory = 64 * limits.MiB
	cg, err := d.create("tcp-0", l)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := cg.destroy(); err != nil {
			t.Errorf("destroy: %v", err)
		}
	}()
	file := filepath.Join(d.dir(cgroup1.Memory, filepath.Join(d.parent, "tcp-0")), v1TCPLimitFile)
	if got := readFile(t, file); got != strconv.Itoa(64<<20) {
		t.Errorf("%s = %s, want the memory limit %d", v1TCPLimitFile, got, 64<<20)
	}
	l.Memory = 96 * limits.MiB
	if err := cg.update(l); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, file); got != strconv.Itoa(96<<20) {
		t.Errorf("after update, %s = %s, want %d", v1TCPLimitFile, got, 96<<20)
	}
}

// TestV2SocketMemoryFakeFiles: on cgroup v2 a run's socket buffers are
// charged by the kernel to the run's memory.max (the "sock" line of
// memory.stat), with no setting of their own, so the driver sets
// memory.max, at create and at a warm sandbox's update, and writes no
// kmem or tcp control: a v2 tree has none, and a write there would be a
// v1 habit that fails the run on a v2 host.
func TestV2SocketMemoryFakeFiles(t *testing.T) {
	mnt := t.TempDir()
	writeFiles(t, mnt, map[string]string{
		"cgroup.controllers":              "cpu memory pids",
		"cgroup.subtree_control":          "",
		"sandboxd/cgroup.subtree_control": "",
	})
	d := &v2Driver{mountpoint: mnt, parent: "/sandboxd"}
	l := limits.Defaults()
	l.Memory = 64 * limits.MiB
	cg, err := d.create("sock-0", l)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(mnt, "sandboxd", "sock-0")
	if got := readFile(t, filepath.Join(dir, "memory.max")); got != strconv.Itoa(64<<20) {
		t.Errorf("memory.max = %s, want the run's limit %d: it is what charges the run's socket buffers", got, 64<<20)
	}
	l.Memory = 96 * limits.MiB
	if err := cg.update(l); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dir, "memory.max")); got != strconv.Itoa(96<<20) {
		t.Errorf("after update, memory.max = %s, want %d", got, 96<<20)
	}
	// Every file the driver wrote exists now in the fake tree.
	err = filepath.WalkDir(mnt, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if n := e.Name(); strings.Contains(n, "kmem") || strings.Contains(n, "tcp") {
			t.Errorf("the v2 driver wrote %s: v2 has no kmem or tcp control, socket memory is charged to memory.max", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestV1SocketMemoryResources: the v1 driver asks for the TCP control
// (memory.kmem.tcp.limit_in_bytes) set to the run's memory limit, without
// which v1 charges a run's socket buffers to nothing; the real write is
// TestV1TCPBufferLimitReal's.
func TestV1SocketMemoryResources(t *testing.T) {
	d := &v1Driver{parent: "/sandboxd", roots: map[cgroup1.Name]string{cgroup1.Memory: t.TempDir()}}
	l := limits.Defaults()
	l.Memory = 64 * limits.MiB
	res := d.resources(l)
	if res.Memory.KernelTCP == nil || *res.Memory.KernelTCP != 64<<20 {
		t.Errorf("v1 resources KernelTCP = %v, want the memory limit %d", res.Memory.KernelTCP, 64<<20)
	}
}
