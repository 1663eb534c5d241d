package isolate

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/sandboxd/sandboxd/internal/isolate/nsinit"
)

// checkIDPool: every live run gets a slot of the default host id pool
// (uids_linux.go); the pool must be nobody else's, or a run's quotas (and
// files) would be shared with that user.
func checkIDPool() Check {
	first, last := DefaultHostUID, DefaultHostUID+DefaultIDSlots*IDsPerSandbox-1
	c := Check{Name: "host id pool", Required: true}
	var clash []string
	for _, f := range []string{"/etc/passwd", "/etc/group"} {
		clash = append(clash, idsInRange(f, 2, first, last)...)
	}
	for _, f := range []string{"/etc/subuid", "/etc/subgid"} {
		clash = append(clash, subRangesOverlapping(f, first, last)...)
	}
	if len(clash) > 0 {
		c.Detail = fmt.Sprintf("host ids %d..%d are in use: %s", first, last, strings.Join(clash, ", "))
		c.Fix = "move those users or ranges out of " + fmt.Sprintf("%#x..%#x", first, last) + ": the sandboxes' ids must be theirs alone"
		return c
	}
	c.OK = true
	c.Detail = fmt.Sprintf("each run has %d host ids of its own (one of %d slots from %d, free in passwd, group, subuid, subgid)", IDsPerSandbox, DefaultIDSlots, first)
	return c
}

// idsInRange lists the entries of a passwd-style file whose id (field
// idField, from 0) is in [first, last].
func idsInRange(path string, idField, first, last int) []string {
	var out []string
	eachLine(path, func(line string) {
		f := strings.Split(line, ":")
		if len(f) > idField {
			if id, err := strconv.Atoi(f[idField]); err == nil && id >= first && id <= last {
				out = append(out, path+": "+f[0])
			}
		}
	})
	return out
}

// subRangesOverlapping lists the ranges of a subuid-style file that
// overlap [first, last].
func subRangesOverlapping(path string, first, last int) []string {
	var out []string
	eachLine(path, func(line string) {
		f := strings.Split(line, ":")
		if len(f) != 3 {
			return
		}
		start, err1 := strconv.Atoi(f[1])
		n, err2 := strconv.Atoi(f[2])
		if err1 == nil && err2 == nil && start <= last && start+n-1 >= first {
			out = append(out, path+": "+f[0])
		}
	})
	return out
}

func eachLine(path string, fn func(string)) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fn(sc.Text())
	}
}

// checkUserQuotas: the kernel counts inotify, fanotify and namespaces per
// user namespace (/proc/sys/user, 4.9+ and inotify's 5.11+), and pending
// signals, message queues, locked memory and processes per user namespace
// owner since 5.14; before, those four counted per host uid, which a run
// also has of its own, but not bounded per namespace.
func checkUserQuotas() Check {
	c := Check{Name: "per-user quotas"}
	if _, err := os.Stat("/proc/sys/user/max_inotify_instances"); err != nil {
		c.Detail = "kernel without per-namespace inotify limits: a run's inotify counts against its host uid only"
		c.Fix = "use Linux 5.14 or later"
		return c
	}
	var u unix.Utsname
	_ = unix.Uname(&u)
	var major, minor int
	fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &major, &minor)
	if major < 5 || (major == 5 && minor < 14) {
		c.Detail = "pending signals, message queues and locked memory count per host uid (Linux < 5.14), not per run's user namespace"
		c.Fix = "use Linux 5.14 or later"
		return c
	}
	c.OK = true
	c.Detail = fmt.Sprintf("each run spends its own inotify, signal, mqueue, pipe and namespace quotas, never host root's or another run's; in a run: %s", userLimitsText())
	return c
}

func userLimitsText() string {
	var parts []string
	for _, l := range nsinit.UserLimits {
		parts = append(parts, "user."+l.Name+"="+strconv.Itoa(l.Value))
	}
	return strings.Join(parts, " ")
}
