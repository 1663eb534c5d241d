package isolate

import (
	"os"
	"time"

	"github.com/sandboxd/sandboxd/internal/limits"
)

// cgroupStats are the figures a run's result takes from its cgroup: they
// count every process of the run, not only the one the launcher waited for.
type cgroupStats struct {
	CPU        time.Duration
	PeakMemory int64
	OOMKills   int
}

// runCgroup is one run's cgroup, on whichever hierarchy the host has.
type runCgroup interface {
	// openDir opens the cgroup's directory for one clone-time placement
	// (CLONE_INTO_CGROUP); the caller closes it once the child is cloned.
	// It returns -1 where init joins the cgroup itself (openTasks).
	// Opened per clone, not held for the sandbox's life: every descriptor
	// a sandbox holds in the daemon bounds how many sessions one daemon
	// keeps.
	openDir() (int, error)
	// openTasks opens the cgroup's `tasks` file on each hierarchy (cgroup
	// v1; nil on v2), write-only, for init to join the cgroup by
	// (nsinit.Config.CgroupTasks); the caller closes them once init is
	// cloned.
	openTasks() ([]*os.File, error)
	// openMemoryTasks opens the `tasks` file of the cgroup's memory
	// controller alone (cgroup v1; nil on v2), for a filler to join by:
	// its writes are charged to the cgroup, while its threads count
	// against no pids limit of the cgroup's.
	openMemoryTasks() (*os.File, error)
	// openJoin opens, write-only, the files a process outside the
	// cgroup joins it by, writing 0 to each: every v1 hierarchy's
	// `tasks` (as openTasks), or v2's cgroup.procs. For a zygote's
	// child; the caller closes them.
	openJoin() ([]*os.File, error)
	// cpu is the CPU time used so far; it is polled for the CPU limit.
	cpu() (time.Duration, error)
	stats() (cgroupStats, error)
	// kill sends SIGKILL to every process in the cgroup.
	kill() error
	// update replaces the cgroup's limits (a warm sandbox taking a run).
	update(l limits.Limits) error
	// pids lists the processes in the cgroup.
	pids() ([]int, error)
	// weight gives the cgroup one of parts equal parts of the default
	// CPU weight (one part: the default; see cpushares_linux.go), or,
	// with parts weightLeast, the least weight: a warm sandbox starting
	// up must not slow the runs being served.
	weight(parts int) error
	// destroy removes the cgroup; it kills what is left first.
	destroy() error
}

// cgroupDriver creates run cgroups under one parent on one hierarchy.
type cgroupDriver interface {
	version() string
	create(name string, l limits.Limits) (runCgroup, error)
	// list names the cgroups under the parent, for the sweep of leftovers.
	list() ([]string, error)
	// remove kills and removes a leftover cgroup by name.
	remove(name string) error
	// limitParent caps the memory of the parent, and so of every run
	// under it together, at limit bytes (no swap): the second line behind
	// the daemon's memory budget.
	limitParent(limit int64) error
}

// weightLeast, as weight's parts, is the least CPU weight there is.
const weightLeast = 0

// partWeight is one of parts equal parts of def, at least least; parts
// weightLeast is least.
func partWeight(def, least, parts int) int {
	if parts <= weightLeast {
		return least
	}
	return max(least, def/parts)
}

// cpuQuota maps a CPU bandwidth in cores onto a CFS quota per period.
func cpuQuota(cpus float64) (quota int64, period uint64) {
	period = 100_000 // µs, the kernel's default
	return int64(cpus * float64(period)), period
}
