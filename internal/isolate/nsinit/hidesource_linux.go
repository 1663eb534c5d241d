package nsinit

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// hiddenSource is the mount source every read-only host bind shows in the
// run's /proc/self/mountinfo, in place of the host's device (/dev/vda,
// /dev/mapper/vg-root, ...).
const hiddenSource = "sandbox"

// hostView shows host paths in the run through read-only overlays. A bind
// mount copies its source's device name and device number, which mountinfo
// prints; a mount of a file system of the run's own does not, and overlay
// is the one the run's user namespace may mount over host directories
// (Linux 5.11+). Each overlay has the host directory as its upper layer
// and an empty directory below it (overlay wants two layers when it has no
// upper directory); the empty one is named to the kernel as
// /proc/self/fd/N, so the layer list mountinfo prints ("lowerdir=/usr:/proc
// /self/fd/7") names no path under the state directory. A file, and a
// directory where it can be, is bound from an overlay of its parent
// directory, mounted once per parent aside and detached when the binds
// are done.
//
// Where an overlay would show something else than the bind, or the
// kernel refuses it, the plain recursive bind is kept (its source then
// shows): a directory with other mounts below it (an overlay does not
// cross into them), a file that is itself a mount point or whose directory
// has mounts below it, a path overlay's option syntax cannot carry. The
// second is every container's /etc: the runtime binds /etc/hosts,
// /etc/hostname and /etc/resolv.conf there, those mounts are locked in the
// run's user namespace, and the kernel will not take a directory with
// locked mounts below it as a layer (clone_private_mount: "failed to clone
// lowerpath", EINVAL).
type hostView struct {
	root    string
	scratch string // root/.hostview, removed by done
	empty   *os.File
	// mounts are the mount points of the host, from this namespace's
	// mountinfo (a copy of the host's).
	mounts  []string
	parents map[string]string // host directory -> its overlay in scratch
	// noOverlay: this kernel refused a user namespace's overlay (no
	// overlay, or older than 5.11); the rest are plain binds, and doctor
	// says so.
	noOverlay bool
}

func newHostView(root string) (*hostView, error) {
	v := &hostView{root: root, scratch: filepath.Join(root, ".hostview"), parents: map[string]string{}}
	if err := os.Mkdir(v.scratch, 0o700); err != nil {
		return nil, step("mkdir "+v.scratch, err)
	}
	empty := filepath.Join(v.scratch, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		return nil, step("mkdir "+empty, err)
	}
	var err error
	if v.empty, err = os.Open(empty); err != nil {
		return nil, step("open "+empty, err)
	}
	if v.mounts, err = mountPoints(); err != nil {
		v.empty.Close()
		return nil, err
	}
	return v, nil
}

// mountPoints lists the mount points of this mount namespace.
func mountPoints() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, step("read mountinfo", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 {
			out = append(out, UnescapeMountinfo(fields[4]))
		}
	}
	return out, step("read mountinfo", sc.Err())
}

// UnescapeMountinfo undoes the kernel's octal escapes in a mountinfo field
// (\040 for a space).
func UnescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// isMountPoint reports whether p is a mount point; below, whether some
// mount point is under p.
func (v *hostView) isMountPoint(p string) (at, below bool) {
	for _, m := range v.mounts {
		at = at || m == p
		below = below || strings.HasPrefix(m, p+"/") || (p == "/" && m != "/")
	}
	return at, below
}

// overlayable reports whether p can be an overlay layer as a plain option:
// overlay splits its options at commas and layers at colons, and backslash
// escapes them.
func overlayable(p string) bool { return !strings.ContainsAny(p, `,:\`) }

// mountOverlay mounts a read-only overlay of host directory dir on target.
// errNoOverlay: the kernel has none for a user namespace; EINVAL: it will
// not take dir as a layer (locked mounts below it, a stacking depth past
// its limit).
func (v *hostView) mountOverlay(dir, target string) error {
	opts := "lowerdir=" + dir + ":/proc/self/fd/" + strconv.Itoa(int(v.empty.Fd()))
	err := unix.Mount(hiddenSource, target, "overlay", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, opts)
	if errors.Is(err, unix.ENODEV) || errors.Is(err, unix.EPERM) {
		v.noOverlay = true
		return errNoOverlay
	}
	return err
}

var errNoOverlay = errors.New("no overlay file system for a user namespace")

// bindInstead reports whether mountOverlay's err means a plain bind must
// show the directory: no overlay here, or not of this directory.
func bindInstead(err error) bool { return err == errNoOverlay || errors.Is(err, unix.EINVAL) }

// bind shows host path src (a directory or a file, not a symlink) at
// target, read-only, recursively. Whatever can be is bound from one
// overlay of its parent directory, shared by its siblings: an overlay is a
// superblock, and every superblock alive costs each memory cgroup of the
// host kernel memory (RATIONALE, "Every memory cgroup pays for every
// superblock"): /etc's directories and files here share one.
func (v *hostView) bind(src, target string, dir bool) error {
	at, below := v.isMountPoint(src)
	if v.noOverlay || !overlayable(src) || (dir && below) || (!dir && at) {
		return v.plainBind(src, target)
	}
	ov, err := v.parentOverlay(filepath.Dir(src))
	switch {
	case err != nil && !bindInstead(err):
		return err
	case err == nil && ov != "":
		if err := unix.Mount(filepath.Join(ov, filepath.Base(src)), target, "", unix.MS_BIND, ""); err != nil {
			return step("bind "+src, err)
		}
		return step("make "+src+" read-only", setAttr(target, roAttr, false))
	case !dir:
		return v.plainBind(src, target)
	}
	// A directory whose parent cannot be overlaid (/ has every other
	// mount below it): an overlay of its own.
	err = v.mountOverlay(src, target)
	if bindInstead(err) {
		return v.plainBind(src, target)
	}
	return step("mount an overlay of "+src, err)
}

// parentOverlay is the overlay of host directory parent, mounted aside at
// its first use; "" when parent has mounts below it or cannot be a layer.
func (v *hostView) parentOverlay(parent string) (string, error) {
	if ov, ok := v.parents[parent]; ok {
		return ov, nil
	}
	if _, below := v.isMountPoint(parent); below || !overlayable(parent) {
		return "", nil
	}
	ov := filepath.Join(v.scratch, strconv.Itoa(len(v.parents)))
	if err := os.Mkdir(ov, 0o700); err != nil {
		return "", step("mkdir "+ov, err)
	}
	if err := v.mountOverlay(parent, ov); err != nil {
		if bindInstead(err) {
			return "", err
		}
		return "", step("mount an overlay of "+parent, err)
	}
	v.parents[parent] = ov
	return ov, nil
}

func (v *hostView) plainBind(src, target string) error {
	if err := unix.Mount(src, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return step("bind "+src, err)
	}
	return step("make "+src+" read-only", setAttr(target, roAttr, true))
}

// done detaches the parents' overlays (the files bound from them keep
// theirs) and removes the scratch directory from the run's root.
func (v *hostView) done() error {
	var errs []error
	for _, ov := range v.parents {
		if err := unix.Unmount(ov, unix.MNT_DETACH); err != nil {
			errs = append(errs, step("detach "+ov, err))
		}
	}
	v.empty.Close()
	if err := os.RemoveAll(v.scratch); err != nil {
		errs = append(errs, step("remove "+v.scratch, err))
	}
	return errors.Join(errs...)
}
