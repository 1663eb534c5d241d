package isolate

import (
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// NoInheritedFiles marks every file descriptor past stderr close-on-exec.
// A descriptor this process inherited without that flag (from a shell, a
// supervisor, a test harness) would otherwise pass on to every process it
// starts that Go's exec does not scrub: the fork server, the spawner, the
// wasm workers, and through the fork server every run's process until it
// closes them. The process's own descriptors are close-on-exec already
// (Go opens them so); those it hands a child are dup'ed for it by exec.
// Call it first thing in main, after the re-executed modes have taken
// their inherited descriptors.
func NoInheritedFiles() {
	if unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC) == nil {
		return
	}
	// Before Linux 5.11: one by one.
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return
	}
	names, _ := d.Readdirnames(-1)
	d.Close()
	for _, n := range names {
		if fd, err := strconv.Atoi(n); err == nil && fd > 2 {
			_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC)
		}
	}
}
