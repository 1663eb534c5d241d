package nsinit

import (
	"fmt"
	"os"

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
	offsets := fmt.Sprintf("%d %d 0\n%d %d 0\n", unix.CLOCK_MONOTONIC, 1-mono.Sec, unix.CLOCK_BOOTTIME, 1-boot.Sec)
	return step("set time namespace offsets", os.WriteFile("/proc/self/timens_offsets", []byte(offsets), 0))
}
