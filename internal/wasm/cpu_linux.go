package wasm

import (
	"time"

	"golang.org/x/sys/unix"
)

// threadClock returns a reader of the calling OS thread's CPU time (user
// and system) that can be called from any thread. The caller must have
// locked its goroutine to the thread. The guest runs on that goroutine,
// host functions (WASI) included, so this is the run's CPU time.
func threadClock() (read func() time.Duration, exact bool) {
	// The per-thread CPU clock id of a thread, as glibc's
	// pthread_getcpuclockid makes it: (~tid << 3) | CPUCLOCK_PERTHREAD (4)
	// | CPUCLOCK_SCHED (2).
	clk := int32(^unix.Gettid())<<3 | 6
	return func() time.Duration {
		var ts unix.Timespec
		if err := unix.ClockGettime(clk, &ts); err != nil {
			return 0
		}
		return time.Duration(ts.Nano())
	}, true
}

// gettid is the calling thread's id.
func gettid() int { return unix.Gettid() }
