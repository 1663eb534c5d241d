//go:build !linux

package wasm

import "time"

// threadClock falls back to the wall clock where a thread's CPU clock
// cannot be read from another thread: the guest is single-threaded, so its
// CPU time is at most its wall time.
func threadClock() (read func() time.Duration, exact bool) {
	start := time.Now()
	return func() time.Duration { return time.Since(start) }, false
}

// gettid is 0 where threads have no id the runner can use.
func gettid() int { return 0 }
