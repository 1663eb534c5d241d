package nsinit

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// enterTimeNamespace makes the program's CLOCK_MONOTONIC and CLOCK_BOOTTIME
// start at one second. Both count from the host's boot, so without it they
// tell a tenant the host's uptime (as sysinfo(2) does), however /proc/uptime
// is masked. unshare(CLONE_NEWTIME) moves init's future children, not init,
// into the new namespace; its offsets can be set until the first child is
// in it. Needs the run's /proc (after buildRoot) and CAP_SYS_TIME in the
// run's user namespace (before the capabilities are dropped).
func enterTimeNamespace() error {
	if err := unix.Unshare(unix.CLONE_NEWTIME); err != nil {
		return step("unshare time namespace", err)
	}
	var mono, boot unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &mono); err != nil {
		return step("read CLOCK_MONOTONIC", err)
	}
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &boot); err != nil {
		return step("read CLOCK_BOOTTIME", err)
	}
	// "<clock id> <seconds> <nanoseconds>" per line, the ids numeric.
	offsets := fmt.Sprintf("%d %s\n%d %s\n", unix.CLOCK_MONOTONIC, offsetFrom(mono), unix.CLOCK_BOOTTIME, offsetFrom(boot))
	// The namespace is this thread's (the one locked to the setup), which
	// need not be the thread group's leader that /proc/self names: the
	// leader's would be the host's time namespace, whose offsets init may
	// not set (EPERM). /proc/<tid> is this thread's own.
	path := "/proc/" + strconv.Itoa(unix.Gettid()) + "/timens_offsets"
	return step("set time namespace offsets", os.WriteFile(path, []byte(offsets), 0))
}

// offsetFrom is the offset, as "<seconds> <nanoseconds>" with the
// nanoseconds in [0, 1e9) as the kernel takes them, that makes a clock now
// at now read one second.
func offsetFrom(now unix.Timespec) string {
	off := time.Second.Nanoseconds() - now.Nano()
	sec := off / 1e9
	nsec := off % 1e9
	if nsec < 0 {
		sec, nsec = sec-1, nsec+1e9
	}
	return strconv.FormatInt(sec, 10) + " " + strconv.FormatInt(nsec, 10)
}
