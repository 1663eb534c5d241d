package isolate

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// Every live run gets host ids of its own: a slot of IDsPerSandbox uids
// (and as many gids) from the pool that starts at Config.HostUID. The
// kernel keeps per-user state by host uid (pipe buffers, epoll watches) and
// charges what a user namespace spends (inotify, pending signals, POSIX
// message queues, locked shm, processes, namespaces) to the namespace's
// owner: a slot's first uid owns the run's namespace (startAsOwner) and
// the program runs as another uid of the slot, so each run spends its own
// quotas, never host root's or another run's.
//
// A slot is taken by flock(2)ing <IDLockDir>/<its first uid>.lock, held for the
// run's life, like its run dir: the kernel drops the lock when its holder
// dies, so slots survive daemon crashes without a sweep, and several
// sandboxctl and sandboxd processes sharing a host never take the same one.
// A slot is given up after the run's cgroups and directory are gone.
const (
	// DefaultHostUID is the pool's first id: 0x60000000, in the range
	// systemd reserves for container managers' 64 Ki-sized id blocks
	// (524288..1879048191, its UIDS-GIDS.md), above where /etc/subuid
	// hands out users' ranges (useradd starts at 100000), and well below
	// 2^31, which some tools take for negative.
	DefaultHostUID = 0x60000000
	// IDsPerSandbox is one slot's size: a whole 16-bit id space, as a
	// container gets, so nobody (65534) is mapped.
	IDsPerSandbox = 65536
	// DefaultIDSlots is the pool's size: 4096 slots end the pool at
	// 0x6FFFFFFF, the top of systemd's container range.
	DefaultIDSlots = 4096
	// DefaultIDLockDir is where the slots' locks are taken: on /run, so
	// that a reboot clears it, and shared by every runner on the host.
	DefaultIDLockDir = "/run/sandboxd-ids"
)

// idSlot is a run's host ids while it holds the slot's lock.
type idSlot struct {
	n        int
	uid, gid int
	lock     *os.File
}

// validIDPool refuses a pool that does not fit in the 32-bit ids below
// the kernel's invalid id (2^32-1).
func validIDPool(cfg Config) error {
	const maxID = 1<<32 - 2
	for _, first := range []int{cfg.HostUID, cfg.HostGID} {
		if first <= 0 || cfg.IDSlots <= 0 || first+cfg.IDSlots*IDsPerSandbox-1 > maxID {
			return fmt.Errorf("%w: host id pool of %d slots from uid %d, gid %d: want positive ids whose %d*%d ids end at or below %d",
				ErrInvalidConfig, cfg.IDSlots, cfg.HostUID, cfg.HostGID, cfg.IDSlots, IDsPerSandbox, maxID)
		}
	}
	return nil
}

// uidsDir holds the slots' lock files. It is the host's, not the state
// dir's: the ids are the host's, and two runners with state dirs of their
// own (a sandboxctl beside a daemon, a test daemon beside a test binary)
// took the same slot, so that two live sandboxes shared host ids.
func (r *Runner) uidsDir() string { return r.cfg.IDLockDir }

// allocIDs takes a free slot, trying the slots in an order that starts at a
// random one, so concurrent runners rarely contend for the same lock file.
func (r *Runner) allocIDs() (*idSlot, error) {
	n := r.cfg.IDSlots
	start := rand.IntN(n)
	for i := range n {
		s := (start + i) % n
		uid := r.cfg.HostUID + s*IDsPerSandbox
		// Named by the slot's first uid, which is what must not be shared,
		// whichever pool layout a runner was given.
		lock, err := tryLockSlot(filepath.Join(r.uidsDir(), strconv.Itoa(uid)+".lock"))
		if err != nil {
			return nil, err
		}
		if lock != nil {
			return &idSlot{n: s, uid: uid, gid: r.cfg.HostGID + s*IDsPerSandbox, lock: lock}, nil
		}
	}
	return nil, fmt.Errorf("all %d host id slots are in use (%s): too many live sandboxes on this host", n, r.uidsDir())
}

// tryLockSlot returns the slot's lock file with its flock held, or nil if
// another process holds it.
func tryLockSlot(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open host id slot: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	switch {
	case err == nil:
		return f, nil
	case errors.Is(err, unix.EWOULDBLOCK):
		f.Close()
		return nil, nil
	default:
		f.Close()
		return nil, fmt.Errorf("lock host id slot: %w", &os.PathError{Op: "flock", Path: path, Err: err})
	}
}

// release gives the slot up.
func (s *idSlot) release() {
	if s != nil && s.lock != nil {
		s.lock.Close()
		s.lock = nil
	}
}

// asOwner runs fn on an OS thread whose effective uid is owner, the
// owner of a run's user namespace. The sandbox's start runs so (the kernel
// makes the creator's euid the new namespace's owner and charges the
// namespace's ucounts to it), and so does what the daemon does to the
// run's processes that needs a capability in the run's namespace (prlimit):
// the owner holds every capability there, whereas host root holds one only
// if it holds it on the host (a root without CAP_SYS_RESOURCE, as in some
// containers, could not prlimit a run's program).
//
// Credentials are per thread in Linux; the raw syscalls below change only
// this locked thread's (syscall.Setresuid would change every thread's).
// The thread keeps its effective capabilities (capset after the euid
// change, which cleared them) so it can still write a child's id maps,
// and the Go runtime never clones new threads from a locked one. The
// thread must outlive fn: a started init's Pdeathsig fires when the thread
// that cloned it exits. So its euid goes back to 0 (which restores its
// effective capabilities) and it is unlocked, as any other thread; if that
// fails it stays locked and the runtime ends it with the goroutine (and
// with it a half-started init).
func asOwner(fn func() error, owner int) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := becomeOwner(owner); err != nil {
			errc <- err
			return
		}
		err := fn()
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), 0, ^uintptr(0)); e != 0 {
			errc <- errors.Join(err, fmt.Errorf("restore the owner thread's euid: %w", e))
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	err := <-errc
	// The euid change marked the process not dumpable (as after any
	// setuid); the daemon was, and stays so.
	_ = unix.Prctl(unix.PR_SET_DUMPABLE, 1, 0, 0, 0)
	return err
}

// becomeOwner sets this thread's euid to owner and restores its effective
// capabilities from the permitted set, which an euid change from 0 clears.
func becomeOwner(owner int) error {
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), uintptr(owner), ^uintptr(0)); e != 0 {
		return fmt.Errorf("set the owner thread's euid to %d: %w", owner, e)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("read the owner thread's capabilities: %w", err)
	}
	for i := range data {
		data[i].Effective = data[i].Permitted
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("restore the owner thread's capabilities: %w", err)
	}
	return nil
}
