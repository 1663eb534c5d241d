package wasm

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/cgroups/v3"
	"golang.org/x/sys/unix"
)

// A worker lives in a memory cgroup of its own, so that everything the
// guest makes the worker allocate counts against the run's limit: linear
// memory, tables, wazero's per-instance structures, Go's heap. Only the
// memory controller is used: a guest is one thread (cpus needs nothing),
// starts no processes (pids needs nothing), and its CPU time is the
// thread's own clock. The files are written directly; both hierarchies
// have the same few operations under different names.

// cgroupRoot is the parent of the workers' cgroups.
type cgroupRoot struct {
	dir string
	v2  bool
}

// cgroupFiles names a memory cgroup's files on one hierarchy.
type cgroupFiles struct {
	limit, swap, usage, peak, events string
}

var (
	v1Files = cgroupFiles{limit: "memory.limit_in_bytes", swap: "memory.memsw.limit_in_bytes",
		usage: "memory.usage_in_bytes", peak: "memory.max_usage_in_bytes", events: "memory.oom_control"}
	v2Files = cgroupFiles{limit: "memory.max", swap: "memory.swap.max",
		usage: "memory.current", peak: "memory.peak", events: "memory.events"}
)

// newCgroupRoot creates (or reuses) the parent cgroup named parent: under
// the memory controller's mount on v1 (or hybrid, where the controllers
// are on v1), under /sys/fs/cgroup with +memory for its children on v2.
func newCgroupRoot(parent string) (*cgroupRoot, error) {
	switch cgroups.Mode() {
	case cgroups.Unified:
		return newCgroupRootAt("/sys/fs/cgroup", parent, true)
	case cgroups.Legacy, cgroups.Hybrid:
		return newCgroupRootAt("/sys/fs/cgroup/memory", parent, false)
	}
	return nil, errors.New("no cgroup hierarchy is mounted")
}

// newCgroupRootAt is newCgroupRoot under mount; tests point it at a fake
// tree.
func newCgroupRootAt(mount, parent string, v2 bool) (*cgroupRoot, error) {
	r := &cgroupRoot{dir: filepath.Join(mount, parent), v2: v2}
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return nil, fmt.Errorf("create cgroup %s: %w", r.dir, err)
	}
	if v2 {
		ctl := filepath.Join(r.dir, "cgroup.subtree_control")
		if err := os.WriteFile(ctl, []byte("+memory"), 0); err != nil {
			return nil, fmt.Errorf("enable the memory controller in %s: %w", ctl, err)
		}
	} else if err := os.WriteFile(filepath.Join(r.dir, "memory.use_hierarchy"), []byte("1"), 0); err != nil {
		// Kernels since 5.16 have it on and refuse nothing; older ones take
		// it only while there are no children, which is when it matters.
		if n, rerr := readCgroupUint(filepath.Join(r.dir, "memory.use_hierarchy")); rerr != nil || n != 1 {
			return nil, fmt.Errorf("turn on memory.use_hierarchy in %s: %w", r.dir, err)
		}
	}
	r.removeStale()
	return r, nil
}

// removeStale removes the cgroups of runners that are gone: a worker's
// cgroup is named "<runner pid>-<n>", and a runner that died left them
// empty (its workers died with it, Pdeathsig). Those of live runners,
// other daemons or test binaries on the host, are left alone.
func (r *cgroupRoot) removeStale() {
	ents, err := os.ReadDir(r.dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		pidStr, _, ok := strings.Cut(e.Name(), "-")
		pid, err := strconv.Atoi(pidStr)
		if !e.IsDir() || !ok || err != nil || pid <= 0 {
			continue
		}
		if unix.Kill(pid, 0) == unix.ESRCH {
			// Fails, harmlessly, if something still lives in it.
			_ = os.Remove(filepath.Join(r.dir, e.Name()))
		}
	}
}

func (r *cgroupRoot) files() cgroupFiles {
	if r.v2 {
		return v2Files
	}
	return v1Files
}

// memCgroup is one worker's cgroup.
type memCgroup struct {
	dir   string
	v2    bool
	f     cgroupFiles
	peakF *os.File // v2: memory.peak, reset through this fd (see resetPeak)
}

// create makes the cgroup name under r, with no swap: a guest's memory
// never leaves RAM, so the limit is the whole of it.
func (r *cgroupRoot) create(name string) (*memCgroup, error) {
	c := &memCgroup{dir: filepath.Join(r.dir, name), v2: r.v2, f: r.files()}
	if err := os.Mkdir(c.dir, 0o755); err != nil {
		return nil, fmt.Errorf("create cgroup %s: %w", c.dir, err)
	}
	if c.v2 {
		if err := os.WriteFile(filepath.Join(c.dir, c.f.swap), []byte("0"), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
			c.remove()
			return nil, fmt.Errorf("turn swap off in cgroup %s: %w", c.dir, err)
		}
	}
	return c, nil
}

// add moves process pid into the cgroup.
func (c *memCgroup) add(pid int) error {
	p := filepath.Join(c.dir, "cgroup.procs")
	if err := os.WriteFile(p, []byte(strconv.Itoa(pid)), 0); err != nil {
		return fmt.Errorf("add worker %d to %s: %w", pid, p, err)
	}
	return nil
}

// setLimit sets the memory limit, and on v1 memory+swap to the same where
// the kernel accounts swap; memsw may never be below memory, so the order
// depends on the direction.
func (c *memCgroup) setLimit(limit uint64) error {
	val := []byte(strconv.FormatUint(limit, 10))
	files := []string{c.f.limit}
	if !c.v2 {
		if _, err := os.Stat(filepath.Join(c.dir, c.f.swap)); err == nil {
			cur, err := readCgroupUint(filepath.Join(c.dir, c.f.limit))
			if err != nil {
				return err
			}
			if limit > cur {
				files = []string{c.f.swap, c.f.limit}
			} else {
				files = []string{c.f.limit, c.f.swap}
			}
		}
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(c.dir, f), val, 0); err != nil {
			return fmt.Errorf("set %s of %s to %d: %w", f, c.dir, limit, err)
		}
	}
	return nil
}

// usage is the memory charged to the cgroup now.
func (c *memCgroup) usage() (uint64, error) {
	return readCgroupUint(filepath.Join(c.dir, c.f.usage))
}

// resetPeak starts a new peak at the current usage. v1 resets
// max_usage_in_bytes for every reader; v2 (kernels 6.12 and later) resets
// memory.peak for reads through the fd written to, which is kept for peak.
// Where v2's memory.peak cannot be reset, peak reads it as is: the
// worker's peak over its life, never below the run's.
func (c *memCgroup) resetPeak() error {
	if !c.v2 {
		return os.WriteFile(filepath.Join(c.dir, c.f.peak), []byte("0"), 0)
	}
	if c.peakF == nil {
		f, err := os.OpenFile(filepath.Join(c.dir, c.f.peak), os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("open memory.peak: %w", err)
		}
		c.peakF = f
	}
	_, _ = c.peakF.Write([]byte("reset\n"))
	return nil
}

// peak is the largest usage since resetPeak.
func (c *memCgroup) peak() (uint64, error) {
	if c.peakF == nil {
		return readCgroupUint(filepath.Join(c.dir, c.f.peak))
	}
	b := make([]byte, 32)
	n, err := c.peakF.ReadAt(b, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("read memory.peak of %s: %w", c.dir, err)
	}
	return parseCgroupUint(b[:n])
}

// oomKills counts the processes the kernel killed in the cgroup for its
// limit ("oom_kill" of memory.events on v2, of memory.oom_control on v1).
func (c *memCgroup) oomKills() (uint64, error) {
	b, err := os.ReadFile(filepath.Join(c.dir, c.f.events))
	if err != nil {
		return 0, fmt.Errorf("read the OOM kills of %s: %w", c.dir, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "oom_kill "); ok {
			return parseCgroupUint([]byte(v))
		}
	}
	return 0, nil
}

// remove deletes the cgroup, whose process must be gone.
func (c *memCgroup) remove() error {
	if c.peakF != nil {
		c.peakF.Close()
		c.peakF = nil
	}
	// The kernel may still be uncharging the reaped worker: EBUSY for a
	// moment.
	var err error
	for range 50 {
		if err = os.Remove(c.dir); err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("remove cgroup: %w", err)
}

func readCgroupUint(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	n, err := parseCgroupUint(b)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	return n, nil
}

// parseCgroupUint parses a cgroup counter; "max" (v2, no limit) is the
// largest value.
func parseCgroupUint(b []byte) (uint64, error) {
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return ^uint64(0), nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse cgroup value %q: %w", s, err)
	}
	return n, nil
}
