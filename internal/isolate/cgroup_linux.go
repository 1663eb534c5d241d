package isolate

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/sandboxd/sandboxd/internal/limits"
)

// detectCgroups picks the driver for the host's hierarchy: cgroup v2 when it
// is the only one (unified), else v1 (legacy, or hybrid with the controllers
// on v1, as on this project's own machines).
func detectCgroups(parent string) (cgroupDriver, error) {
	if noSocketAccounting() {
		return nil, fmt.Errorf("%w: the kernel was booted with cgroup.memory=nosocket: a run's socket buffers would be charged to no cgroup and could grow to the host's tcp_mem; boot without it", ErrUnsupported)
	}
	switch cgroups.Mode() {
	case cgroups.Unified:
		return &v2Driver{mountpoint: "/sys/fs/cgroup", parent: "/" + parent}, nil
	case cgroups.Legacy, cgroups.Hybrid:
		return newV1Driver(parent)
	}
	return nil, fmt.Errorf("%w: no cgroup hierarchy is mounted", ErrUnsupported)
}

// noSocketAccounting reports whether the kernel charges socket memory to no
// cgroup, on v1 or v2 (the boot option cgroup.memory=nosocket).
func noSocketAccounting() bool {
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return false
	}
	for _, arg := range strings.Fields(string(b)) {
		if opts, ok := strings.CutPrefix(arg, "cgroup.memory="); ok && slices.Contains(strings.Split(opts, ","), "nosocket") {
			return true
		}
	}
	return false
}

// v1Subsystems are the controllers a run needs on cgroup v1.
var v1Subsystems = []cgroup1.Name{cgroup1.Memory, cgroup1.Pids, cgroup1.Cpu, cgroup1.Cpuacct}

type v1Driver struct {
	parent string
	// roots maps each subsystem to its mount point.
	roots map[cgroup1.Name]string
	// subs are the v1Subsystems, found once: cgroup1.Default reads
	// /proc/self/mountinfo and lists the huge page sizes (155 us on the
	// request path, more the larger the host's mount table).
	// The controllers' mount points do not move under a running daemon.
	subs []cgroup1.Subsystem
}

func newV1Driver(parent string) (*v1Driver, error) {
	d := &v1Driver{parent: "/" + parent, roots: map[cgroup1.Name]string{}}
	subs, err := cgroup1.Default()
	if err != nil {
		return nil, fmt.Errorf("find cgroup v1 controllers: %w", err)
	}
	for _, s := range subs {
		p, ok := s.(interface{ Path(string) string })
		if !ok {
			continue
		}
		d.roots[s.Name()] = p.Path("/")
		if slices.Contains(v1Subsystems, s.Name()) {
			d.subs = append(d.subs, s)
		}
	}
	for _, n := range v1Subsystems {
		if _, ok := d.roots[n]; !ok {
			return nil, fmt.Errorf("%w: cgroup v1 controller %q is not mounted", ErrUnsupported, n)
		}
	}
	if _, err := os.Stat(filepath.Join(d.roots[cgroup1.Memory], v1TCPLimitFile)); err != nil {
		return nil, fmt.Errorf("%w: the cgroup v1 memory controller has no %s (%v): a run's TCP socket buffers could not be charged to it and would grow outside its memory limit; use a kernel with it, or cgroup v2", ErrUnsupported, v1TCPLimitFile, err)
	}
	return d, nil
}

// v1TCPLimitFile is the v1 control that turns on, and bounds, the charging
// of a cgroup's TCP socket buffers.
const v1TCPLimitFile = "memory.kmem.tcp.limit_in_bytes"

func (d *v1Driver) version() string { return "v1" }

func (d *v1Driver) hierarchy() ([]cgroup1.Subsystem, error) { return d.subs, nil }

// resources maps a run's limits onto v1 controller settings.
func (d *v1Driver) resources(l limits.Limits) *specs.LinuxResources {
	mem := int64(l.Memory)
	pids := int64(l.Pids)
	quota, period := cpuQuota(l.CPUs)
	res := &specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: &mem},
		Pids:   &specs.LinuxPids{Limit: &pids},
		CPU:    &specs.LinuxCPU{Quota: &quota, Period: &period},
	}
	// Swap = limit: memory+swap may not exceed memory, so no swap.
	if _, err := os.Stat(filepath.Join(d.roots[cgroup1.Memory], "memory.memsw.limit_in_bytes")); err == nil {
		res.Memory.Swap = &mem
	}
	// v1 charges TCP socket buffers to a cgroup only once its
	// memory.kmem.tcp.limit_in_bytes is set, and then to a counter of
	// their own: without it, a run's unread loopback buffers grow to the
	// host's tcp_mem, outside any limit. The run's memory limit bounds
	// them as it bounds its memory (newV1Driver checks the file exists).
	res.Memory.KernelTCP = &mem
	return res
}

func (d *v1Driver) create(name string, l limits.Limits) (runCgroup, error) {
	res := d.resources(l)
	path := filepath.Join(d.parent, name)
	cg, err := cgroup1.New(cgroup1.StaticPath(path), res, cgroup1.WithHierarchy(d.hierarchy))
	if err != nil {
		// Some hierarchies may have the directory already.
		_ = (&v1Cgroup{d: d, path: path}).destroy()
		return nil, fmt.Errorf("create cgroup v1 %s: %w", path, err)
	}
	return &v1Cgroup{d: d, path: path, cg: cg}, nil
}

func (d *v1Driver) dir(n cgroup1.Name, path string) string {
	return filepath.Join(d.roots[n], path)
}

func (d *v1Driver) list() ([]string, error) {
	return listDirs(d.dir(cgroup1.Memory, d.parent))
}

func (d *v1Driver) remove(name string) error {
	c := &v1Cgroup{d: d, path: filepath.Join(d.parent, name)}
	return c.destroy()
}

func (d *v1Driver) limitParent(limit int64) error {
	dir := d.dir(cgroup1.Memory, d.parent)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create cgroup v1 %s: %w", d.parent, err)
	}
	if err := v1Hierarchical(dir); err != nil {
		return err
	}
	return v1SetMemory(dir, limit)
}

// v1Hierarchical turns on memory.use_hierarchy in dir, without which a
// v1 limit covers only the cgroup's own processes and none of its
// children's (kernels since 5.16 always have it on).
func v1Hierarchical(dir string) error {
	p := filepath.Join(dir, "memory.use_hierarchy")
	if n, err := readUint(p); err != nil || n == 1 {
		return err
	}
	// The kernel takes it only while dir has no children, and its parent
	// does not have it on.
	if err := os.WriteFile(p, []byte("1"), 0); err != nil {
		return fmt.Errorf("turn on %s: a limit on it would not cover the runs under it: %w", p, err)
	}
	return nil
}

// v1SetMemory sets dir's memory limit and, when the kernel accounts swap,
// its memory+swap limit to the same (no swap). memsw may never be below
// memory, at any step: raising, memsw goes first; lowering, memory does.
func v1SetMemory(dir string, limit int64) error {
	mem := filepath.Join(dir, "memory.limit_in_bytes")
	memsw := filepath.Join(dir, "memory.memsw.limit_in_bytes")
	files := []string{mem}
	if _, err := os.Stat(memsw); err == nil {
		cur, err := readUint(mem)
		if err != nil {
			return err
		}
		if uint64(limit) > cur {
			files = []string{memsw, mem}
		} else {
			files = []string{mem, memsw}
		}
	}
	for _, f := range files {
		if err := os.WriteFile(f, []byte(strconv.FormatInt(limit, 10)), 0); err != nil {
			return fmt.Errorf("set %s to %d: %w", f, limit, err)
		}
	}
	return nil
}

type v1Cgroup struct {
	d    *v1Driver
	path string
	cg   cgroup1.Cgroup
}

func (c *v1Cgroup) openDir() (int, error) { return -1, nil }

func (c *v1Cgroup) update(l limits.Limits) error {
	// memsw must stay >= memory at every step: lowering, memory goes
	// first; raising, memsw does. containerd writes memory first (its
	// swap for a raise exchanges memory with the soft limit, not with
	// memsw), so a raise fails at memory: then memsw is raised here and
	// the update made again.
	res := c.d.resources(l)
	err := c.cg.Update(res)
	if err == nil || res.Memory.Swap == nil {
		return err
	}
	memsw := filepath.Join(c.d.dir(cgroup1.Memory, c.path), "memory.memsw.limit_in_bytes")
	if werr := os.WriteFile(memsw, []byte(strconv.FormatInt(*res.Memory.Swap, 10)), 0); werr != nil {
		return fmt.Errorf("%w; raising memsw first: %w", err, werr)
	}
	return c.cg.Update(res)
}

// cpu.shares: the kernel's default is 1024, its minimum 2.
func (c *v1Cgroup) weight(parts int) error {
	w := partWeight(1024, 2, parts)
	return os.WriteFile(filepath.Join(c.d.dir(cgroup1.Cpu, c.path), "cpu.shares"), []byte(strconv.Itoa(w)), 0)
}

func (c *v1Cgroup) pids() ([]int, error) {
	return readPids(filepath.Join(c.d.dir(cgroup1.Memory, c.path), "cgroup.procs"))
}

// openTasks opens `tasks` once per hierarchy (cpu and cpuacct are
// usually one). Init writes 0 to them: a thread that moves itself takes
// no global lock, while a move by pid (cgroup.procs, or tasks with a
// pid) takes cgroup_threadgroup_rwsem for writing, whose first taking
// after a quiet spell waits out an RCU grace period: 6-10 ms here, the
// largest single step of a cold run (RATIONALE, "A cold run's cgroup
// move waited out a grace period").
func (c *v1Cgroup) openTasks() ([]*os.File, error) {
	var files []*os.File
	seen := map[string]bool{}
	for _, n := range v1Subsystems {
		// Co-mounted controllers have one mount point (newV1Driver).
		dir := c.d.dir(n, c.path)
		if seen[dir] {
			continue
		}
		seen[dir] = true
		f, err := c.openTasksIn(dir)
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			return nil, err
		}
		files = append(files, f)
	}
	return files, nil
}

func (c *v1Cgroup) openJoin() ([]*os.File, error) { return c.openTasks() }

func (c *v1Cgroup) openMemoryTasks() (*os.File, error) {
	return c.openTasksIn(c.d.dir(cgroup1.Memory, c.path))
}

func (c *v1Cgroup) openTasksIn(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "tasks"), os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("open the run's cgroup: %w", err)
	}
	return f, nil
}

func (c *v1Cgroup) cpu() (time.Duration, error) {
	n, err := readUint(filepath.Join(c.d.dir(cgroup1.Cpuacct, c.path), "cpuacct.usage"))
	return time.Duration(n), err
}

func (c *v1Cgroup) stats() (cgroupStats, error) {
	var s cgroupStats
	var err error
	s.CPU, err = c.cpu()
	if err != nil {
		return s, err
	}
	mem := c.d.dir(cgroup1.Memory, c.path)
	peak, err := readUint(filepath.Join(mem, "memory.max_usage_in_bytes"))
	if err != nil {
		return s, err
	}
	s.PeakMemory = int64(peak)
	kv, err := readKV(filepath.Join(mem, "memory.oom_control"))
	if err != nil {
		return s, err
	}
	s.OOMKills = int(kv["oom_kill"])
	return s, nil
}

func (c *v1Cgroup) kill() error {
	return killProcs(filepath.Join(c.d.dir(cgroup1.Memory, c.path), "cgroup.procs"))
}

func (c *v1Cgroup) destroy() error {
	var errs []error
	for _, n := range v1Subsystems {
		dir := c.d.dir(n, c.path)
		if err := killAndRemove(dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

type v2Driver struct {
	mountpoint string
	parent     string
}

func (d *v2Driver) version() string { return "v2" }

// v2Resources maps a run's limits onto v2 controller settings.
func v2Resources(l limits.Limits) *cgroup2.Resources {
	mem := int64(l.Memory)
	var zero int64
	quota, period := cpuQuota(l.CPUs)
	return &cgroup2.Resources{
		Memory: &cgroup2.Memory{Max: &mem, Swap: &zero},
		Pids:   &cgroup2.Pids{Max: int64(l.Pids)},
		CPU:    &cgroup2.CPU{Max: cgroup2.NewCPUMax(&quota, &period)},
	}
}

func (d *v2Driver) create(name string, l limits.Limits) (runCgroup, error) {
	res := v2Resources(l)
	group := filepath.Join(d.parent, name)
	m, err := cgroup2.NewManager(d.mountpoint, group, res)
	if err != nil {
		return nil, fmt.Errorf("create cgroup v2 %s: %w", group, err)
	}
	return &v2Cgroup{dir: filepath.Join(d.mountpoint, group), m: m}, nil
}

func (d *v2Driver) list() ([]string, error) {
	return listDirs(filepath.Join(d.mountpoint, d.parent))
}

func (d *v2Driver) remove(name string) error {
	c := &v2Cgroup{dir: filepath.Join(d.mountpoint, d.parent, name)}
	return c.destroy()
}

func (d *v2Driver) limitParent(limit int64) error {
	// NewManager creates the group and enables the memory controller on
	// the way to it, so its memory.max exists.
	if _, err := cgroup2.NewManager(d.mountpoint, d.parent, &cgroup2.Resources{Memory: &cgroup2.Memory{Max: &limit}}); err != nil {
		return fmt.Errorf("set the memory.max of cgroup v2 %s: %w", d.parent, err)
	}
	return nil
}

type v2Cgroup struct {
	dir string
	m   *cgroup2.Manager
}

// openDir opens the directory by its path, which names this cgroup and no
// other for as long as it exists (a run's cgroups are named by its id): a
// removed cgroup is not found, never another one entered.
func (c *v2Cgroup) openDir() (int, error) {
	fd, err := unix.Open(c.dir, unix.O_DIRECTORY|unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: c.dir, Err: err}
	}
	return fd, nil
}

func (c *v2Cgroup) openTasks() ([]*os.File, error) { return nil, nil }

// openMemoryTasks: on v2 a process is cloned into the whole cgroup (fd)
// or not at all.
func (c *v2Cgroup) openMemoryTasks() (*os.File, error) { return nil, nil }

func (c *v2Cgroup) openJoin() ([]*os.File, error) {
	f, err := os.OpenFile(filepath.Join(c.dir, "cgroup.procs"), os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("open the run's cgroup: %w", err)
	}
	return []*os.File{f}, nil
}

func (c *v2Cgroup) update(l limits.Limits) error { return c.m.Update(v2Resources(l)) }

func (c *v2Cgroup) pids() ([]int, error) { return readPids(filepath.Join(c.dir, "cgroup.procs")) }

// cpu.weight: the kernel's default is 100, its minimum 1.
func (c *v2Cgroup) weight(parts int) error {
	w := partWeight(100, 1, parts)
	return os.WriteFile(filepath.Join(c.dir, "cpu.weight"), []byte(strconv.Itoa(w)), 0)
}

func (c *v2Cgroup) cpu() (time.Duration, error) {
	kv, err := readKV(filepath.Join(c.dir, "cpu.stat"))
	return time.Duration(kv["usage_usec"]) * time.Microsecond, err
}

func (c *v2Cgroup) stats() (cgroupStats, error) {
	var s cgroupStats
	var err error
	if s.CPU, err = c.cpu(); err != nil {
		return s, err
	}
	peak, err := readUint(filepath.Join(c.dir, "memory.peak"))
	if err != nil {
		return s, err
	}
	s.PeakMemory = int64(peak)
	kv, err := readKV(filepath.Join(c.dir, "memory.events"))
	s.OOMKills = int(kv["oom_kill"])
	return s, err
}

func (c *v2Cgroup) kill() error {
	err := os.WriteFile(filepath.Join(c.dir, "cgroup.kill"), []byte("1"), 0)
	if err == nil {
		return nil
	}
	// Kernels before 5.14 have no cgroup.kill.
	return killProcs(filepath.Join(c.dir, "cgroup.procs"))
}

func (c *v2Cgroup) destroy() error {
	_ = c.kill()
	return killAndRemove(c.dir)
}

// readPids reads a cgroup.procs file; a missing file is an empty cgroup.
func readPids(procs string) ([]int, error) {
	b, err := os.ReadFile(procs)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// killProcs SIGKILLs every pid listed in a cgroup.procs file.
func killProcs(procs string) error {
	pids, err := readPids(procs)
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return err
}

// killAndRemove kills whatever is left in the cgroup dir and removes it,
// waiting (bounded) for the killed processes to be gone.
func killAndRemove(dir string) error {
	procs := filepath.Join(dir, "cgroup.procs")
	deadline := time.Now().Add(5 * time.Second)
	for delay := time.Millisecond; ; delay = min(2*delay, 100*time.Millisecond) {
		err := unix.Rmdir(dir)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			return &os.PathError{Op: "rmdir", Path: dir, Err: err}
		}
		_ = killProcs(procs)
		time.Sleep(delay)
	}
}

func listDirs(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

func readUint(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return 0, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", path, err)
	}
	return n, nil
}

// readKV parses "key value" lines (memory.events, cpu.stat, oom_control).
func readKV(path string) (map[string]uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil {
			out[k] = n
		}
	}
	return out, nil
}
