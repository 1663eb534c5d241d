package nsinit

import (
	"errors"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// maskedProc are covered in the run's /proc: files by /dev/null (empty to
// read, writes go nowhere), directories by an empty read-only tmpfs. They are
// runc's and Docker's default maskedPaths, plus what else tells a tenant
// about the host it shares: the boot command line, the kernel's build
// config, the block devices' names (partitions, diskstats, swaps) and the
// host's pressure figures. Paths a kernel does not have are skipped.
var maskedProc = []string{
	"acpi", "asound", "interrupts", "kcore", "keys", "latency_stats",
	"timer_list", "timer_stats", "sched_debug", "scsi",
	"cmdline", "config.gz", "partitions", "diskstats", "swaps", "pressure",
}

// readonlyProc are made read-only, as runc's readonlyPaths: the program has
// no capability to write them, and a read-only mount keeps it so if one
// came back.
var readonlyProc = []string{"bus", "fs", "irq", "sys", "sysrq-trigger"}

// mountProc mounts a fresh procfs of the run's own pid namespace (the
// host's processes, and init's environment, are not in it), then hides what
// it shows of the host: the parent's generated files over theirs, the
// masked paths covered, the read-only ones made so. Masks come before the
// read-only binds, which take them along (MS_REC). It returns the run's
// UserLimits files, opened while /proc/sys is writable.
func mountProc(root, devDir string, files []ProcFile) ([]userLimitFile, error) {
	dir := filepath.Join(root, "proc")
	if err := step("mkdir /proc", os.Mkdir(dir, 0o555)); err != nil {
		return nil, err
	}
	if err := step("mount /proc", unix.Mount("proc", dir, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")); err != nil {
		return nil, err
	}
	limits, err := openUserLimits(dir)
	if err != nil {
		return nil, err
	}
	if err := hideHostProc(dir, devDir, files); err != nil {
		closeUserLimits(limits)
		return nil, err
	}
	return limits, nil
}

// hideHostProc covers what the run's /proc at dir shows of the host.
func hideHostProc(dir, devDir string, files []ProcFile) error {
	for _, f := range files {
		target := filepath.Join(dir, f.Path)
		if _, err := os.Lstat(target); errors.Is(err, os.ErrNotExist) {
			continue // not on this kernel: nothing to hide
		}
		if err := bindOver(f.Source, target, "/proc/"+f.Path, procAttr); err != nil {
			return err
		}
	}
	empty := ""
	for _, p := range maskedProc {
		if err := maskPath(filepath.Join(dir, p), "/proc/"+p, filepath.Join(devDir, "null"), &empty); err != nil {
			return err
		}
	}
	for _, p := range readonlyProc {
		if err := readonlyPath(filepath.Join(dir, p), "/proc/"+p); err != nil {
			return err
		}
	}
	return nil
}

// Attributes of the mounts over /proc: /dev/null must keep its device
// node usable, or reading a masked file fails with EACCES instead of
// finding it empty.
const (
	procAttr    = roAttr | unix.MOUNT_ATTR_NOEXEC
	devNullAttr = unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NOEXEC
)

// bindOver shows the file src read-only at target (name is how the step is
// reported).
func bindOver(src, target, name string, attr uint64) error {
	if err := step("bind "+name, unix.Mount(src, target, "", unix.MS_BIND, "")); err != nil {
		return err
	}
	return step("make "+name+" read-only", setAttr(target, attr, false))
}

// maskPath covers path, if the kernel has it: a file with devNull, a
// directory with an empty read-only tmpfs, the same one for every
// directory: *empty is the first directory masked ("" before), and the
// others are bound to it. A tmpfs is a superblock, and every superblock
// alive costs each memory cgroup of the host kernel memory (RATIONALE,
// "Every memory cgroup pays for every superblock"); one empty tmpfs
// read-only is as empty seen from two places.
func maskPath(path, name, devNull string, empty *string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return step("stat "+name, err)
	}
	if !fi.IsDir() {
		return bindOver(devNull, path, name, devNullAttr)
	}
	if *empty != "" {
		return bindOver(*empty, path, name, procAttr)
	}
	if err := step("mask "+name, unix.Mount("tmpfs", path, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=4k,mode=0555")); err != nil {
		return err
	}
	*empty = path
	return nil
}

// readonlyPath makes path, if the kernel has it, a read-only bind of
// itself, with whatever is mounted under it.
func readonlyPath(path, name string) error {
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := step("bind "+name, unix.Mount(path, path, "", unix.MS_BIND|unix.MS_REC, "")); err != nil {
		return err
	}
	return step("make "+name+" read-only", setAttr(path, procAttr, true))
}
