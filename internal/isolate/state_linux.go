package isolate

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// The state directory holds one directory per live run:
//
//	<state>/runs/<id>/lock   flock(2)ed by the owning process while the run lives
//	<state>/runs/<id>/root/  empty; init mounts the run's root tmpfs on it
//	                         inside its own mount namespace
//	<state>/runs/<id>/work/  the workspace: a tmpfs, mounted in the runs'
//	                         mount namespace (mountns_linux.go)
//	<state>/runs/<id>/gen/   the run's generated files (device nodes, /proc
//	                         files): a tmpfs, mounted there likewise
//
// The kernel drops a flock when its holder dies, even by SIGKILL, so a run
// directory whose lock can be taken belongs to nobody: sweep removes it, its
// mount and its cgroups. Locks (not pid files) make this safe against pid
// reuse and against several sandboxctl and sandboxd processes sharing a host.
//
// A run directory is made and locked in two steps, so a sweep must never
// look at one in between: <state>/runs.lock is held shared while a run dir
// is created and locked, and exclusively for the whole of a sweep.

func newRunID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// runDir is a live run's directory, with its lock held, and the host ids
// of its sandboxes.
type runDir struct {
	path string
	lock *os.File
	ids  *idSlot
	// mounts is where the run's mounts are (mountns_linux.go).
	mounts *runMounts
}

func (r *Runner) newRunDir(id string) (*runDir, error) {
	ids, err := r.allocIDs()
	if err != nil {
		return nil, err
	}
	unlock, err := r.lockRuns(unix.LOCK_SH)
	if err != nil {
		ids.release()
		return nil, err
	}
	defer unlock()
	path := filepath.Join(r.runsDir(), id)
	// 0711: the sandbox's host uids must traverse to root/, not list runs.
	if err := os.Mkdir(path, 0o711); err != nil {
		ids.release()
		return nil, fmt.Errorf("create run dir: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(path, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err == nil {
		err = unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	}
	if err == nil {
		err = os.Mkdir(filepath.Join(path, "root"), 0o711)
	}
	if err != nil {
		if lock != nil {
			lock.Close()
		}
		_ = os.RemoveAll(path)
		ids.release()
		return nil, fmt.Errorf("set up run dir %s: %w", path, err)
	}
	return &runDir{path: path, lock: lock, ids: ids, mounts: r.mounts}, nil
}

// lockRuns takes the state dir's runs.lock (LOCK_SH to create a run dir,
// LOCK_EX to sweep) and returns its release.
func (r *Runner) lockRuns(how int) (func(), error) {
	f, err := os.OpenFile(filepath.Join(r.cfg.StateDir, "runs.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open runs lock: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock runs: %w", &os.PathError{Op: "flock", Path: f.Name(), Err: err})
	}
	return func() { f.Close() }, nil
}

func (r *Runner) runsDir() string { return filepath.Join(r.cfg.StateDir, "runs") }

// remove unmounts and deletes the run dir, then drops the lock and the
// host ids, which no process of the run holds any more.
func (d *runDir) remove() error {
	err := removeRunDir(d.mounts, d.path, false)
	d.lock.Close()
	d.ids.release()
	return err
}

// removeRunDir unmounts the run's mounts and removes the directory. The
// mounts are in the runs' mount namespace m (this process's own when m is
// nil); a sweep of leftovers also unmounts in this process's own, where
// runs of a version before that namespace, or without it, left theirs.
func removeRunDir(m *runMounts, path string, leftover bool) error {
	unmount := func() error {
		for _, sub := range []string{"work", genDir} {
			dir := filepath.Join(path, sub)
			if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
				return &os.PathError{Op: "unmount", Path: dir, Err: err}
			}
		}
		return nil
	}
	// Both in one trip to the namespace's thread.
	if err := m.do(unmount); err != nil {
		return err
	}
	if leftover && m != nil {
		if err := unmount(); err != nil {
			return err
		}
	}
	return os.RemoveAll(path)
}

// Sweep removes what runs of dead processes left behind: run directories,
// their workspace mounts, and cgroups. It never touches a run whose owner is
// alive. New calls it; a daemon may call it again at any time.
func (r *Runner) Sweep() error {
	unlock, err := r.lockRuns(unix.LOCK_EX)
	if err != nil {
		return err
	}
	defer unlock()
	ents, err := os.ReadDir(r.runsDir())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var cgroups []string
	var errs []error
	for _, e := range ents {
		id := e.Name()
		path := filepath.Join(r.runsDir(), id)
		if held(filepath.Join(path, "lock")) {
			continue
		}
		if cgroups == nil {
			if cgroups, err = r.cg.list(); err != nil {
				return errors.Join(append(errs, err)...)
			}
		}
		// Only cgroups of a dead run found in this state dir are ours to
		// remove: other runners (another state dir, the same cgroup
		// parent) may be using the rest. A run removes its cgroups before
		// its directory, so a crash never leaves a cgroup without one.
		// The cgroups go first (killing what is left in them), then the
		// directory, so a sweep that fails half-way is redone next time.
		r.log.Info("sweeping leftover run", "run", id)
		failed := false
		for _, name := range cgroups {
			if strings.HasPrefix(name, id+"-") {
				if err := r.cg.remove(name); err != nil {
					errs, failed = append(errs, err), true
				}
			}
		}
		if failed {
			continue
		}
		if err := removeRunDir(r.mounts, path, true); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// held reports whether another process holds the lock file's flock.
func held(path string) bool {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return errors.Is(err, unix.EWOULDBLOCK)
	}
	return false
}
