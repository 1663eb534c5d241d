package isolate

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"

	"github.com/sandboxd/sandboxd/internal/isolate/nsinit"
	"github.com/sandboxd/sandboxd/internal/limits"
	"golang.org/x/sys/unix"
)

// Doctor checks the host features the process backend stands on. It runs
// no sandbox; `sandboxctl doctor` adds a real run at the end.
func Doctor() []Check {
	return []Check{
		checkRoot(),
		checkUserNS(),
		checkTimeNS(),
		checkIDPool(),
		checkUserQuotas(),
		checkCgroups(),
		checkSwap(),
		checkSocketMemory(),
		checkDynMods(),
		checkCorePattern(),
		checkSeccomp(),
		checkInit(),
		checkReaper(),
		checkSpawner(),
		checkFilesystem("tmpfs", "tmpfs (workspace, /tmp, new root)"),
		checkFilesystem("devpts", fmt.Sprintf("a private devpts per run (openpty, /dev/ptmx; at most %d terminals)", nsinit.MaxPtys)),
		checkSyscall("mount_setattr", "read-only bind mounts applied recursively (Linux 5.12+)", func() error {
			return unix.MountSetattr(-1, "", 0, &unix.MountAttr{})
		}, false, "without it only the top of each bind is made read-only; upgrade the kernel to 5.12 or later"),
		checkSyscall("openat2", "produced files collected without following symlinks (Linux 5.6+)", func() error {
			_, err := unix.Openat2(-1, "", &unix.OpenHow{})
			return err
		}, true, "upgrade the kernel to 5.6 or later"),
	}
}

func checkRoot() Check {
	c := Check{Name: "root", Required: true, OK: os.Geteuid() == 0}
	c.Detail = "running as uid " + strconv.Itoa(os.Geteuid())
	if !c.OK {
		c.Fix = "run as root: the process backend creates cgroups and maps the sandbox's uids (rootless mode is not built yet)"
	}
	return c
}

func checkUserNS() Check {
	c := Check{Name: "user namespaces", Required: true}
	b, err := os.ReadFile("/proc/sys/user/max_user_namespaces")
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	switch {
	case err != nil:
		c.Detail = "kernel without user namespaces (" + err.Error() + ")"
		c.Fix = "use a kernel built with CONFIG_USER_NS=y"
	case n == 0:
		c.Detail = "user.max_user_namespaces is 0"
		c.Fix = "sysctl -w user.max_user_namespaces=15000"
	default:
		c.OK = true
		c.Detail = fmt.Sprintf("user.max_user_namespaces=%d", n)
	}
	return c
}

// checkTimeNS: each run's clocks count from its own start (nsinit's
// enterTimeNamespace), not from the host's boot.
func checkTimeNS() Check {
	c := Check{Name: "time namespaces", Required: true}
	if _, err := os.Stat("/proc/self/ns/time"); err != nil {
		c.Detail = "kernel without time namespaces (" + err.Error() + "): a run's clocks would tell the host's uptime"
		c.Fix = "use a kernel (5.6 or later) built with CONFIG_TIME_NS=y"
		return c
	}
	c.OK, c.Detail = true, "a run's CLOCK_MONOTONIC and CLOCK_BOOTTIME start at its start"
	return c
}

func checkCgroups() Check {
	c := Check{Name: "cgroups", Required: true}
	switch cgroups.Mode() {
	case cgroups.Unified:
		b, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
		have := strings.Fields(string(b))
		missing := missingOf(have, "memory", "pids", "cpu")
		c.OK = err == nil && len(missing) == 0
		c.Detail = "cgroup v2, controllers: " + strings.Join(have, " ")
		if !c.OK {
			c.Fix = "enable the " + strings.Join(missing, ", ") + " controller(s) in the root cgroup (or delegate a subtree that has them)"
		}
	case cgroups.Legacy, cgroups.Hybrid:
		d, err := newV1Driver("sandboxd")
		c.OK = err == nil
		mode := "cgroup v1"
		if cgroups.Mode() == cgroups.Hybrid {
			mode = "cgroup v1 (hybrid: controllers on v1, v2 mounted without them)"
		}
		c.Detail = mode
		if err != nil {
			c.Detail += ": " + err.Error()
			c.Fix = "mount the memory, pids, cpu and cpuacct v1 controllers, or boot with cgroup v2 (systemd.unified_cgroup_hierarchy=1)"
		} else {
			c.Detail += ", controllers: memory pids cpu cpuacct at " + filepath.Dir(d.roots["memory"])
		}
	default:
		c.Detail = "no cgroup hierarchy mounted"
		c.Fix = "mount cgroup2 on /sys/fs/cgroup"
	}
	return c
}

func missingOf(have []string, want ...string) []string {
	var missing []string
	for _, w := range want {
		found := false
		for _, h := range have {
			found = found || h == w
		}
		if !found {
			missing = append(missing, w)
		}
	}
	return missing
}

func checkSwap() Check {
	c := Check{Name: "no swap for runs"}
	swaps, _ := os.ReadFile("/proc/swaps")
	noSwap := bytes.Count(swaps, []byte("\n")) <= 1
	accounting := true
	if cgroups.Mode() != cgroups.Unified {
		if d, err := newV1Driver("sandboxd"); err == nil {
			_, err := os.Stat(filepath.Join(d.roots["memory"], "memory.memsw.limit_in_bytes"))
			accounting = err == nil
		}
	}
	switch {
	case noSwap:
		c.OK, c.Detail = true, "the host has no swap"
	case accounting:
		c.OK, c.Detail = true, "swap is on; runs get memory+swap = memory"
	default:
		c.Detail = "swap is on but not accounted in cgroup v1 (no memory.memsw.*): runs may swap past their memory limit"
		c.Fix = "boot with swapaccount=1, or turn swap off"
	}
	return c
}

// checkSocketMemory: a run's TCP socket buffers count against its memory
// limit (cgroup_linux.go).
func checkSocketMemory() Check {
	c := Check{Name: "socket memory", Required: true}
	switch {
	case noSocketAccounting():
		c.Detail = "the kernel was booted with cgroup.memory=nosocket: socket buffers are charged to no cgroup"
		c.Fix = "boot without cgroup.memory=nosocket"
	case cgroups.Mode() == cgroups.Unified:
		c.OK, c.Detail = true, "cgroup v2 charges a run's socket buffers to its memory.max"
		if os.Geteuid() == 0 {
			c.OK, c.Detail = probeSocketMemory(&v2Driver{mountpoint: "/sys/fs/cgroup", parent: "/sandboxd"})
		}
	default:
		d, err := newV1Driver("sandboxd")
		if err != nil {
			c.Detail = err.Error()
			c.Fix = "use a kernel whose v1 memory controller has " + v1TCPLimitFile + ", or boot with cgroup v2 (systemd.unified_cgroup_hierarchy=1)"
			return c
		}
		c.OK = true
		c.Detail = "cgroup v1: each run's TCP socket buffers are bounded by its memory limit (" + v1TCPLimitFile + " at " + d.roots["memory"] + ")"
		if os.Geteuid() == 0 {
			c.OK, c.Detail = probeSocketMemory(d)
		}
	}
	if !c.OK && c.Fix == "" {
		c.Fix = "a run's socket buffers would grow outside its memory limit: use cgroup v2, or a v1 kernel whose " + v1TCPLimitFile + " takes a limit"
	}
	return c
}

// probeSocketMemory creates a run cgroup with a 64 MiB memory limit, as a
// run gets one, and reads back what charges its socket buffers: on v1 the
// TCP limit the driver set, on v2 memory.max and memory.stat's "sock".
func probeSocketMemory(d cgroupDriver) (bool, string) {
	const limit = 64 << 20
	l := limits.Defaults()
	l.Memory = limit
	name := "doctor-" + newRunID()
	cg, err := d.create(name, l)
	if err != nil {
		return false, "could not create a probe cgroup: " + err.Error()
	}
	defer cg.destroy()
	want := strconv.Itoa(limit)
	switch d := d.(type) {
	case *v1Driver:
		file := filepath.Join(d.dir(cgroup1.Memory, filepath.Join(d.parent, name)), v1TCPLimitFile)
		b, err := os.ReadFile(file)
		if got := strings.TrimSpace(string(b)); err != nil || got != want {
			return false, fmt.Sprintf("cgroup v1: a run's %s reads %q (%v), want its memory limit %s: its TCP buffers are charged to nothing", v1TCPLimitFile, got, err, want)
		}
		return true, "cgroup v1: probed, a run's " + v1TCPLimitFile + " is its memory limit, so its TCP socket buffers are charged and bounded"
	case *v2Driver:
		dir := filepath.Join(d.mountpoint, d.parent, name)
		max, err1 := os.ReadFile(filepath.Join(dir, "memory.max"))
		stat, err2 := os.ReadFile(filepath.Join(dir, "memory.stat"))
		if strings.TrimSpace(string(max)) != want || err1 != nil || err2 != nil || !strings.Contains("\n"+string(stat), "\nsock ") {
			return false, fmt.Sprintf("cgroup v2: a run's memory.max reads %q, memory.stat has no sock line (%v, %v)", strings.TrimSpace(string(max)), err1, err2)
		}
		return true, "cgroup v2: probed, a run's memory.max is its limit and memory.stat counts its socket buffers (sock)"
	}
	return false, "unknown cgroup driver"
}

func checkSeccomp() Check {
	c := Check{Name: "seccomp", Required: true}
	_, err := unix.PrctlRetInt(unix.PR_GET_SECCOMP, 0, 0, 0, 0)
	if err != nil {
		c.Detail = "seccomp unavailable: " + err.Error()
		c.Fix = "use a kernel built with CONFIG_SECCOMP_FILTER=y"
		return c
	}
	c.OK, c.Detail = true, "seccomp filters available (deny list with a reason per rule; argument rules compare the 32 bits the kernel reads)"
	return c
}

func checkFilesystem(fs, what string) Check {
	c := Check{Name: fs, Required: true}
	b, _ := os.ReadFile("/proc/filesystems")
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[len(f)-1] == fs {
			c.OK = true
		}
	}
	c.Detail = what
	if !c.OK {
		c.Fix = "use a kernel with " + fs + " support"
	}
	return c
}

// checkSyscall probes a syscall with arguments that are always wrong: any
// error but ENOSYS means the kernel has it.
func checkSyscall(name, what string, probe func() error, required bool, fix string) Check {
	c := Check{Name: name, Required: required, Detail: what}
	err := probe()
	c.OK = !errors.Is(err, unix.ENOSYS)
	if !c.OK {
		c.Fix = fix
	}
	return c
}

// checkDynMods: moving a process between cgroups takes a global lock whose
// fast mode makes the first move after a quiet spell wait out an RCU grace
// period (5-10 ms measured here, on every cold run). The cgroup2 mount
// option favordynmods keeps the lock in its slow-reader mode: moves take
// ~0.1 ms, forks and exits pay a little more. The lock is shared by all
// hierarchies, so on a hybrid host the option on the v2 mount speeds up the
// v1 moves too. A host-wide trade-off: doctor recommends it, sandboxd does
// not make it behind the operator's back.
func checkDynMods() Check {
	c := Check{Name: "cgroup moves"}
	b, _ := os.ReadFile("/proc/mounts")
	var v2 string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 4 && f[2] == "cgroup2" {
			v2 = f[1]
			if strings.Contains(","+f[3]+",", ",favordynmods,") {
				c.OK, c.Detail = true, "fast: favordynmods is set on "+v2
				return c
			}
		}
	}
	c.Detail = "each cold run waits an RCU grace period (~5-10 ms) to enter its cgroup"
	if v2 != "" {
		c.Fix = "mount -o remount,favordynmods " + v2 + " (host-wide: faster cgroup moves, slightly slower fork and exit)"
	} else {
		c.Fix = "mount a cgroup2 hierarchy with -o favordynmods (host-wide: faster cgroup moves, slightly slower fork and exit)"
	}
	return c
}

// checkCorePattern: RLIMIT_CORE 0 stops core files, but when core_pattern
// pipes to a helper (systemd-coredump, apport) the kernel still starts that
// helper on the host, as root, for every crash in a sandbox, and feeds it
// the crashed program's memory. Not namespaced; the operator's choice.
func checkCorePattern() Check {
	c := Check{Name: "core dumps"}
	b, err := os.ReadFile("/proc/sys/kernel/core_pattern")
	pattern := strings.TrimSpace(string(b))
	switch {
	case err != nil:
		c.Detail = "cannot read kernel.core_pattern: " + err.Error()
	case strings.HasPrefix(pattern, "|"):
		c.Detail = "kernel.core_pattern pipes to " + strings.Fields(pattern[1:] + " ")[0] + ": a crash in a sandbox starts that helper on the host"
		c.Fix = "sysctl -w kernel.core_pattern=core (runs have RLIMIT_CORE 0, so no core file is written)"
	default:
		c.OK, c.Detail = true, "runs have RLIMIT_CORE 0 and core_pattern writes files: no core leaves a run"
	}
	return c
}
