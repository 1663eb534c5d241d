package limits

import (
	"runtime"
	"time"
)

// Defaults returns the limits of a run that sets none: enough for a small
// program in any of the runtimes, small enough to run many at once.
func Defaults() Limits {
	return Limits{
		Timeout:   Duration(10 * time.Second),
		CPUTime:   Duration(10 * time.Second),
		Memory:    256 * MiB,
		Pids:      64,
		Output:    1 * MiB,
		Tmpfs:     64 * MiB,
		FileSize:  64 * MiB,
		OpenFiles: 256,
		CPUs:      1,
	}
}

// DefaultCeiling returns the highest limits a server accepts unless it is
// configured otherwise. CPUs is the number of CPUs of the host.
func DefaultCeiling() Limits {
	return Limits{
		Timeout:   Duration(5 * time.Minute),
		CPUTime:   Duration(5 * time.Minute),
		Memory:    4 * GiB,
		Pids:      1024,
		Output:    64 * MiB,
		Tmpfs:     1 * GiB,
		FileSize:  1 * GiB,
		OpenFiles: 4096,
		CPUs:      float64(runtime.NumCPU()),
	}
}

// Merge returns l with each zero field taken from d. Typically d is
// Defaults() or a server's configured defaults.
func (l Limits) Merge(d Limits) Limits {
	for _, f := range fields {
		f.merge(&l, d)
	}
	return l
}
