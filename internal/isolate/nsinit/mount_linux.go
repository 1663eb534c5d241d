package nsinit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// Mount flags every mount of the sandbox gets unless it needs exec.
const (
	roAttr = unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV
	rwAttr = unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV
)

// Devices are the device nodes of the sandbox's /dev, bound from
// Config.DevDir: a user namespace cannot mknod, and these are the ones
// programs expect.
var Devices = []string{"null", "zero", "full", "random", "urandom"}

// buildRoot makes the run's file system: a small tmpfs as the new root,
// read-only binds of the host's system directories, a fresh /proc with the
// host's facts masked, a minimal /dev, size-capped tmpfs /tmp and /dev/shm,
// the workspace, then pivot_root and the old root detached. Nothing else of
// the host stays reachable. It returns the run's UserLimits files, for
// setup to write once init has made its own namespaces.
func buildRoot(cfg *Config) (limits []userLimitFile, err error) {
	defer func() {
		if err != nil {
			closeUserLimits(limits)
			limits = nil
		}
	}()
	// Our copy of the mount tree must not propagate anything back to the
	// host (or receive the host's later mounts).
	if err := step("make mounts private", unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, "")); err != nil {
		return limits, err
	}
	if err := attachMounts(cfg); err != nil {
		return limits, err
	}
	root := cfg.Root
	if err := step("mount root tmpfs", unix.Mount("sandbox", root, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=4m,mode=0755")); err != nil {
		return limits, err
	}
	view, err := newHostView(root)
	if err != nil {
		return limits, err
	}
	for _, b := range cfg.Binds {
		if err := bindReadOnly(view, root, b); err != nil {
			view.done()
			return limits, err
		}
	}
	if err := view.done(); err != nil {
		return limits, err
	}
	if limits, err = mountProc(root, devDir(cfg), cfg.ProcFiles); err != nil {
		return limits, err
	}
	if err := mountDev(root, devDir(cfg), cfg.TmpSize, cfg.TmpInodes); err != nil {
		return limits, err
	}
	if err := mountTmpfs(filepath.Join(root, "tmp"), cfg.TmpSize, cfg.TmpInodes, "1777"); err != nil {
		return limits, err
	}
	ws := filepath.Join(root, cfg.WorkspaceDir)
	if err := step("mkdir workspace", os.MkdirAll(ws, 0o755)); err != nil {
		return limits, err
	}
	if err := step("bind workspace", unix.Mount(cfg.Workspace, ws, "", unix.MS_BIND, "")); err != nil {
		return limits, err
	}
	if err := step("set workspace attributes", setAttr(ws, rwAttr, false)); err != nil {
		return limits, err
	}
	for _, f := range cfg.Files {
		if err := writeRootFile(root, f); err != nil {
			return limits, err
		}
	}
	if err := pivotRoot(root); err != nil {
		return limits, err
	}
	// The root tmpfs holds only mount points, symlinks and /etc files:
	// nothing there is the program's to change.
	return limits, step("make / read-only", setAttr("/", roAttr, false))
}

// bindReadOnly shows the host path b.Path at the same place under root,
// read-only, recursively, through view (its mount source hidden). A
// symlink is recreated, not followed, so /bin -> usr/bin stays a link into
// the read-only /usr.
func bindReadOnly(view *hostView, root string, b Bind) error {
	fi, err := os.Lstat(b.Path)
	if err != nil {
		if b.Optional && errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return step("stat "+b.Path, err)
	}
	target := filepath.Join(root, b.Path)
	if err := step("mkdir "+filepath.Dir(target), os.MkdirAll(filepath.Dir(target), 0o755)); err != nil {
		return err
	}
	switch {
	case fi.Mode()&os.ModeSymlink != 0:
		dest, err := os.Readlink(b.Path)
		if err != nil {
			return step("readlink "+b.Path, err)
		}
		return step("symlink "+b.Path, os.Symlink(dest, target))
	case fi.IsDir():
		if err := os.Mkdir(target, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return step("mkdir "+target, err)
		}
	default:
		f, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return step("create "+target, err)
		}
		f.Close()
	}
	return view.bind(b.Path, target, fi.IsDir())
}

// setAttr sets mount attributes with mount_setattr(2) (Linux 5.12), which
// can apply them to a whole subtree at once; on older kernels it falls back
// to a bind remount of the top mount, keeping the flags a user namespace may
// not clear.
func setAttr(path string, attr uint64, recursive bool) error {
	flags := unix.AT_NO_AUTOMOUNT
	if recursive {
		flags |= unix.AT_RECURSIVE
	}
	err := unix.MountSetattr(unix.AT_FDCWD, path, uint(flags), &unix.MountAttr{Attr_set: attr})
	if !errors.Is(err, unix.ENOSYS) {
		return err
	}
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return err
	}
	mflags := uintptr(unix.MS_BIND | unix.MS_REMOUNT)
	locked := uintptr(st.Flags) & (unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_RDONLY | unix.MS_NOATIME | unix.MS_RELATIME | unix.MS_NODIRATIME)
	mflags |= locked
	if attr&unix.MOUNT_ATTR_RDONLY != 0 {
		mflags |= unix.MS_RDONLY
	}
	if attr&unix.MOUNT_ATTR_NOSUID != 0 {
		mflags |= unix.MS_NOSUID
	}
	if attr&unix.MOUNT_ATTR_NODEV != 0 {
		mflags |= unix.MS_NODEV
	}
	return unix.Mount("", path, "", mflags, "")
}

// mountTmpfs mounts a size-capped tmpfs on dir. Its pages are charged to
// the memory cgroup of whoever writes them: the run.
func mountTmpfs(dir string, size, inodes int64, mode string) error {
	if err := step("mkdir "+dir, os.MkdirAll(dir, 0o755)); err != nil {
		return err
	}
	opts := "size=" + strconv.FormatInt(size, 10) + ",nr_inodes=" + strconv.FormatInt(inodes, 10) + ",mode=" + mode
	return step("mount tmpfs "+dir, unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts))
}

func mountDev(root, devDir string, shmSize, shmInodes int64) error {
	dev := filepath.Join(root, "dev")
	if err := step("mkdir /dev", os.Mkdir(dev, 0o755)); err != nil {
		return err
	}
	// A mount of the root's own /dev, not a tmpfs of its own: every
	// superblock alive costs each memory cgroup of the host kernel memory
	// (RATIONALE, "Every memory cgroup pays for every superblock"). It is
	// a mount, so it has attributes of its own: read-only at the end.
	if err := step("mount /dev", unix.Mount(dev, dev, "", unix.MS_BIND, "")); err != nil {
		return err
	}
	if err := step("set /dev attributes", setAttr(dev, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NOEXEC, false)); err != nil {
		return err
	}
	for _, d := range Devices {
		target := filepath.Join(dev, d)
		f, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY, 0o666)
		if err != nil {
			return step("create /dev/"+d, err)
		}
		f.Close()
		if err := step("bind /dev/"+d, unix.Mount(filepath.Join(devDir, d), target, "", unix.MS_BIND, "")); err != nil {
			return err
		}
		if err := step("set /dev/"+d+" attributes", setAttr(target, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NOEXEC, false)); err != nil {
			return err
		}
	}
	links := [][2]string{
		{"/proc/self/fd", "fd"},
		{"/proc/self/fd/0", "stdin"},
		{"/proc/self/fd/1", "stdout"},
		{"/proc/self/fd/2", "stderr"},
	}
	for _, l := range links {
		if err := step("symlink /dev/"+l[1], os.Symlink(l[0], filepath.Join(dev, l[1]))); err != nil {
			return err
		}
	}
	if err := mountTmpfs(filepath.Join(dev, "shm"), shmSize, shmInodes, "1777"); err != nil {
		return err
	}
	if err := mountDevpts(dev); err != nil {
		return err
	}
	return step("make /dev read-only", setAttr(dev, roAttr|unix.MOUNT_ATTR_NOEXEC, false))
}

// MaxPtys caps the pseudo-terminals of one sandbox. The kernel's
// kernel.pty.max is for the whole host, and all devpts instances but the
// host's share what kernel.pty.reserve leaves: without a cap one run could
// take every other run's terminals.
const MaxPtys = 64

// mountDevpts gives the sandbox a devpts instance of its own at /dev/pts,
// with /dev/ptmx pointing at its ptmx, as a container has: openpty works,
// and the sandbox sees and reaches no terminal of the host's or another
// run's. tty is gid 5 as on Debian; the run's ids map it.
func mountDevpts(dev string) error {
	pts := filepath.Join(dev, "pts")
	if err := step("mkdir /dev/pts", os.Mkdir(pts, 0o755)); err != nil {
		return err
	}
	opts := "newinstance,ptmxmode=0666,mode=0620,gid=5,max=" + strconv.Itoa(MaxPtys)
	if err := step("mount /dev/pts", unix.Mount("devpts", pts, "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, opts)); err != nil {
		return err
	}
	return step("symlink /dev/ptmx", os.Symlink("pts/ptmx", filepath.Join(dev, "ptmx")))
}

// devDir is where the device nodes are bound from.
func devDir(cfg *Config) string {
	if cfg.DevDir == "" {
		return "/dev"
	}
	return cfg.DevDir
}

func writeRootFile(root string, f RootFile) error {
	p := filepath.Join(root, f.Path)
	if err := step("mkdir "+filepath.Dir(f.Path), os.MkdirAll(filepath.Dir(p), 0o755)); err != nil {
		return err
	}
	return step("write "+f.Path, os.WriteFile(p, []byte(f.Content), os.FileMode(f.Mode)))
}

// pivotRoot makes root the new / and detaches the old one, with the
// pivot_root(".", ".") sequence runc uses: no directory for the old root is
// needed, and after the lazy unmount nothing of it is reachable.
func pivotRoot(root string) error {
	oldroot, err := unix.Open("/", unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return step("open old root", err)
	}
	defer unix.Close(oldroot)
	if err := unix.Chdir(root); err != nil {
		return step("chdir new root", err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return step("pivot_root", err)
	}
	// The old root is now stacked under "."; reach it through the fd and
	// detach it.
	if err := unix.Fchdir(oldroot); err != nil {
		return step("fchdir old root", err)
	}
	if err := unix.Mount("", ".", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return step("make old root slave", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return step("detach old root", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return step("chdir /", fmt.Errorf("after pivot_root: %w", err))
	}
	return nil
}
