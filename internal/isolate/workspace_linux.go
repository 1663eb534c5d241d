package isolate

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/workspace"
)

// Workspace is a run's working directory: a size-capped tmpfs, mounted in
// the runs' mount namespace (mountns_linux.go) and bind-mounted at
// /workspace in the sandbox. It outlives the single
// executions of a run (compile, then run) and is removed by Close.
//
// The parent writes the input files before the program starts and reads the
// produced files after every process of the run is gone; it never follows a
// path the program could have planted (see Collect).
type Workspace struct {
	r   *Runner
	id  string
	dir *runDir
	// work is the workspace's host path; this process reaches its files
	// by local().
	work string
	// gen is the small tmpfs of the files generated for its sandboxes:
	// device nodes and /proc files (genfiles_linux.go).
	gen string
	// dev is the workspace tmpfs's device: openRoot checks it.
	dev    uint64
	inputs map[string]workspace.FileStamp
	// owned are the directories placed files made, already given to the
	// sandbox user: each is chowned once, however many files it holds.
	owned map[string]bool
	seq   int
}

// NewWorkspace creates a run's state directory and its workspace tmpfs of
// the given size.
func (r *Runner) NewWorkspace(size limits.Bytes) (*Workspace, error) {
	id := newRunID()
	d, err := r.newRunDir(id)
	if err != nil {
		return nil, err
	}
	work := filepath.Join(d.path, "work")
	if err := os.Mkdir(work, 0o700); err != nil {
		d.remove()
		return nil, fmt.Errorf("create workspace: %w", err)
	}
	opts := fmt.Sprintf("size=%d,nr_inodes=%d,mode=0755,uid=%d,gid=%d", int64(size), workspace.Inodes(int64(size)), d.ids.uid+SandboxUID, d.ids.gid+SandboxUID)
	if err := r.mounts.do(func() error {
		return unix.Mount("sandboxd-work", work, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts)
	}); err != nil {
		d.remove()
		return nil, fmt.Errorf("mount workspace tmpfs: %w", &os.PathError{Op: "mount", Path: work, Err: err})
	}
	var st unix.Stat_t
	if err := unix.Stat(r.mounts.path(work), &st); err != nil {
		d.remove()
		return nil, fmt.Errorf("stat workspace: %w", &os.PathError{Op: "stat", Path: work, Err: err})
	}
	gen, err := mountGenFiles(r.mounts, d.path)
	if err != nil {
		d.remove()
		return nil, err
	}
	return &Workspace{r: r, id: id, dir: d, work: work, gen: gen, dev: st.Dev, inputs: map[string]workspace.FileStamp{}}, nil
}

// ID is the run's id, also the prefix of its cgroups' names.
func (w *Workspace) ID() string { return w.id }

// WriteFile places an input file in the workspace, owned by the sandbox
// user. It goes through an os.Root so no path can leave the workspace.
func (w *Workspace) WriteFile(f run.File) error {
	name, err := workspace.CleanName(f.Name)
	if err != nil {
		return err
	}
	return w.writeFile(name, f)
}

// WriteInternal places a file of the sandbox's own under the reserved
// .sandboxd directory (a prebuilt cache, say), owned by the sandbox user.
// It is not an input: Collect never returns it.
func (w *Workspace) WriteInternal(f run.File) error {
	if err := w.MkdirInternal(f.Name); err != nil {
		return err
	}
	if err := w.writeFile(f.Name, f); err != nil {
		return err
	}
	delete(w.inputs, f.Name)
	return nil
}

func (w *Workspace) writeFile(name string, f run.File) error {
	root, err := os.OpenRoot(w.local())
	if err != nil {
		return err
	}
	defer root.Close()
	uid, gid := w.owner()
	if err := w.mkdirOwned(root, path.Dir(name)); err != nil {
		return fmt.Errorf("write %s: %w", run.Quote(name, run.MaxName), err)
	}
	mode := os.FileMode(f.Mode & 0o777)
	if mode == 0 {
		mode = 0o644
	}
	fh, err := root.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return fmt.Errorf("write %s: %w", run.Quote(name, run.MaxName), err)
	}
	_, err = fh.Write(f.Content)
	if err == nil {
		err = fh.Chown(uid, gid)
	}
	if err == nil {
		err = fh.Chmod(mode)
	}
	if err == nil {
		var st os.FileInfo
		if st, err = fh.Stat(); err == nil {
			w.inputs[name] = workspace.FileStamp{Size: st.Size(), MTime: st.ModTime()}
		}
	}
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", run.Quote(name, run.MaxName), err)
	}
	return nil
}

// Collect returns the regular files the run created or changed (see
// CollectFiles). It opens everything with openat2(RESOLVE_IN_ROOT |
// RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV): a symlink the program planted is
// skipped, never followed, and nothing outside the workspace can be read.
func (w *Workspace) Collect(cl workspace.CollectLimits) ([]run.OutputFile, bool, error) {
	rootfd, err := unix.Open(w.local(), unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, false, &os.PathError{Op: "open", Path: w.work, Err: err}
	}
	defer unix.Close(rootfd)
	open := func(name string, dir bool) (*os.File, error) {
		flags := unix.O_RDONLY | unix.O_NONBLOCK
		if dir {
			flags = unix.O_DIRECTORY | unix.O_RDONLY
		}
		fd, err := openIn(rootfd, name, flags)
		if err != nil {
			if !dir && (errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOENT)) {
				return nil, nil
			}
			return nil, err
		}
		return os.NewFile(uintptr(fd), name), nil
	}
	files, truncated, err := workspace.CollectFiles(open, w.inputs, cl)
	if err != nil {
		return files, truncated, fmt.Errorf("collect workspace files: %w", err)
	}
	return files, truncated, nil
}

// openIn opens name beneath rootfd without following any symlink and
// without crossing a mount.
func openIn(rootfd int, name string, flags int) (int, error) {
	how := unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC | unix.O_NOFOLLOW),
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	}
	fd, err := unix.Openat2(rootfd, name, &how)
	if err != nil {
		return -1, &os.PathError{Op: "openat2", Path: name, Err: err}
	}
	return fd, nil
}

// Close removes the workspace, its mount and the run's state directory.
func (w *Workspace) Close() error {
	return w.dir.remove()
}

// MkdirInternal creates the directory of a workspace-relative path under
// the sandbox's reserved .sandboxd directory (for a compiler's output),
// owned by the sandbox user.
func (w *Workspace) MkdirInternal(file string) error {
	dir := path.Dir(file)
	if dir != workspace.ReservedDir && !strings.HasPrefix(dir, workspace.ReservedDir+"/") {
		return fmt.Errorf("%w: %q is not under %s", workspace.ErrBadFileName, file, workspace.ReservedDir)
	}
	root, err := os.OpenRoot(w.local())
	if err != nil {
		return err
	}
	defer root.Close()
	return w.mkdirOwned(root, dir)
}

// local is the workspace's path as this process reaches it: its mount is
// in the runs' mount namespace (mountns_linux.go). w.work is the path
// init attaches it at in the sandbox's namespace.
func (w *Workspace) local() string { return w.r.mounts.path(w.work) }

// attach lists the run's mounts a sandbox's init attaches in its own
// namespace, at these host paths, before it builds the sandbox's root;
// none where they are in the process's own namespace, which init's copies.
func (w *Workspace) attach() []string {
	if w.r.mounts == nil {
		return nil
	}
	return []string{w.work, w.gen}
}

// owner is the host uid and gid of the sandbox user.
func (w *Workspace) owner() (int, int) {
	return w.dir.ids.uid + SandboxUID, w.dir.ids.gid + SandboxUID
}

// mkdirOwned creates dir and its parents in root, owned by the sandbox
// user so the program can write into them.
func (w *Workspace) mkdirOwned(root *os.Root, dir string) error {
	if dir == "." {
		return nil
	}
	if w.owned[dir] {
		return nil
	}
	if err := root.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// Each ancestor once: chowning all of them for every file would cost
	// the square of the depth per file.
	uid, gid := w.owner()
	for d := dir; d != "." && !w.owned[d]; d = path.Dir(d) {
		if err := root.Lchown(d, uid, gid); err != nil {
			return err
		}
		if w.owned == nil {
			w.owned = map[string]bool{}
		}
		w.owned[d] = true
	}
	return nil
}

// CollectLimits are the runner's caps on produced files.
func (r *Runner) CollectLimits() workspace.CollectLimits { return r.cfg.Collect }
