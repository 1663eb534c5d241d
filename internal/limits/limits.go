// Package limits holds the one type that describes every resource limit of a
// run, its defaults, human units ("256MiB", "1.5s"), validation against a
// server's ceilings, and the numbers each backend needs to enforce it.
package limits

import "time"

// Bytes is a size in bytes. It parses and prints human units (see ParseBytes).
type Bytes int64

// Common sizes.
const (
	KiB Bytes = 1 << 10
	MiB Bytes = 1 << 20
	GiB Bytes = 1 << 30
)

// Duration is a time.Duration that parses and prints human units
// (see ParseDuration).
type Duration time.Duration

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// Limits are the resource limits of one run. The zero value of a field means
// "not set": Merge fills it from the defaults. Every field is enforced by the
// process backend; a backend that cannot enforce a set field refuses the run.
type Limits struct {
	// Timeout is the wall-clock deadline of the run, from start to the last
	// process of it gone.
	Timeout Duration `json:"timeout,omitempty"`
	// CPUTime is the CPU time all processes of the run may use together.
	CPUTime Duration `json:"cpu_time,omitempty"`
	// Memory caps the run's memory cgroup: anonymous memory, page cache and
	// the pages of its tmpfs mounts. Swap is off.
	Memory Bytes `json:"memory,omitempty"`
	// Pids caps the number of processes and threads alive at once.
	Pids int `json:"pids,omitempty"`
	// Output caps stdout and stderr, each; past it the run is killed and the
	// first Output bytes are kept.
	Output Bytes `json:"output,omitempty"`
	// Tmpfs is the size of the workspace and of /tmp, each.
	Tmpfs Bytes `json:"tmpfs,omitempty"`
	// FileSize caps the size of any one file the run writes (RLIMIT_FSIZE).
	FileSize Bytes `json:"file_size,omitempty"`
	// OpenFiles caps the open file descriptors of each process (RLIMIT_NOFILE).
	OpenFiles int `json:"open_files,omitempty"`
	// CPUs is the CPU bandwidth of the run in cores (1.5 = one and a half
	// cores' worth of time per period).
	CPUs float64 `json:"cpus,omitempty"`
}
