package isolate

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// A run's mounts (its workspace tmpfs and its tmpfs of generated files)
// are made in a mount namespace of this process's own, not in the one the
// process runs in, for two reasons:
//
//   - every sandbox's CLONE_NEWNS copies its parent's mount table whole
//     before init pivots away from it. With the runs' mounts in it, 2000
//     open sessions meant 4000 more mounts copied, and detached again, by
//     every new sandbox (2.3 ms more per new mount namespace, measured with
//     `unshare -m`), so a session's creation slowed as more were open;
//   - a process killed mid-run leaves none of them behind: the namespace
//     dies with the process, and the next sweep has only directories left.
//
// The namespace is held by one OS thread, locked for good, that unshared
// CLONE_FS and CLONE_NEWNS and made its copy of the host's mounts slaves:
// the host's later mounts still reach it, nothing made in it reaches the
// host. Mount calls run on that thread (runMounts.do). Every other thread
// reaches the files in it by /proc/self/task/<tid>/root/<path>, which
// resolves path in that thread's namespace (runMounts.path). A sandbox's
// init, cloned from the process's own namespace, is given detached copies
// of its run's mounts (open_tree(OPEN_TREE_CLONE), runMounts.clone) and
// attaches them at the same paths in its own namespace (move_mount), so it
// builds the sandbox's root from them as before.
//
// Where the namespace cannot be made, a nil *runMounts makes the runs'
// mounts in the process's own namespace, as before.

type runMounts struct {
	// tid is the thread that holds the namespace.
	tid  int
	reqs chan func()
}

// processMounts is the process's namespace of run mounts, shared by every
// Runner of the process (a test binary makes many).
var processMounts = sync.OnceValues(startRunMounts)

func startRunMounts() (*runMounts, error) {
	m := &runMounts{reqs: make(chan func())}
	errc := make(chan error, 1)
	go m.hold(errc, nil)
	if err := <-errc; err != nil {
		return nil, fmt.Errorf("make a mount namespace for the runs' mounts: %w", err)
	}
	return m, nil
}

// hold takes an OS thread for good, unshares the namespace on it and
// serves do's calls there. The thread is locked and never unlocked: it is
// in a namespace of its own and must run nothing else, and the Go runtime
// clones no thread from a locked one, so no other thread starts in it.
// locked, if not nil, is closed once the thread is taken.
func (m *runMounts) hold(errc chan<- error, locked chan<- struct{}) {
	runtime.LockOSThread()
	if locked != nil {
		close(locked)
	}
	if unix.Gettid() == unix.Getpid() {
		// The main thread, whose namespace /proc/self shows and
		// whatever reads /proc/self/mountinfo sees: it stays the
		// process's. Kept locked until another goroutine has taken a
		// thread, which then cannot be this one, and given back.
		next := make(chan struct{})
		go m.hold(errc, next)
		<-next
		runtime.UnlockOSThread()
		return
	}
	err := unix.Unshare(unix.CLONE_FS | unix.CLONE_NEWNS)
	if err == nil {
		err = unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, "")
	}
	m.tid = unix.Gettid()
	errc <- err
	if err != nil {
		// Returning from a locked goroutine ends its thread, and with
		// it whatever it unshared.
		return
	}
	for f := range m.reqs {
		f()
	}
}

// do runs f on the thread that holds the namespace (on the caller's
// thread when there is none).
func (m *runMounts) do(f func() error) error {
	if m == nil {
		return f()
	}
	errc := make(chan error, 1)
	m.reqs <- func() { errc <- f() }
	return <-errc
}

// path is the absolute host path p as this process's threads reach it in
// the namespace.
func (m *runMounts) path(p string) string {
	if m == nil {
		return p
	}
	return "/proc/self/task/" + strconv.Itoa(m.tid) + "/root" + p
}

// clone returns a detached copy of the mount at p, for a sandbox's init to
// attach at p in its own namespace; nil when there is no namespace (init
// then finds the mount at p).
func (m *runMounts) clone(p string) (*os.File, error) {
	if m == nil {
		return nil, nil
	}
	fd := -1
	err := m.do(func() error {
		var err error
		fd, err = unix.OpenTree(unix.AT_FDCWD, p, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
		return err
	})
	if err != nil {
		return nil, &os.PathError{Op: "open_tree", Path: p, Err: err}
	}
	return os.NewFile(uintptr(fd), p), nil
}
