package isolate

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sandboxd/sandboxd/internal/isolate/nsinit"
)

// A clone that makes a user namespace is a whole fork in Go: os/exec gives
// up CLONE_VFORK|CLONE_VM when asked for CLONE_NEWUSER, since the child
// must wait for its uid map. Each sandbox's clone then copies this
// process's page tables, and this process takes a copy-on-write fault on
// each page it writes after: in a daemon whose memory grows with its
// sessions, a cost per clone that grows with them (RATIONALE, "Why the
// daemon's fork is a whole fork"). With Config.Spawner, the clones are
// made by the spawner instead (nsinit/spawn_linux.go): the init binary,
// started once, a few MiB that sit still. It makes exactly the clone
// startInit would make here, with the fds sent along, and answers with
// init's pid and a pidfd, by which this process waits for init and kills
// it. The inits are the spawner's children; it reaps them.

// spawner is a started spawner.
type spawner struct {
	// mu serialises the requests: one clone at a time, as its replies
	// carry no name of their request.
	mu   sync.Mutex
	conn *net.UnixConn
	// gone is set once the spawner failed: the runs after clone here.
	gone atomic.Bool
}

// spawner is the spawner for ib; nil when Config.Spawner is off,
// without an init binary, or when the spawner could not start or failed
// (said in the log).
func (r *Runner) spawner(ib *initBinary) *spawner {
	if !r.cfg.Spawner || ib == nil {
		return nil
	}
	sp, err := processSpawner(ib)
	if err != nil {
		r.spawnWarn.Do(func() {
			r.log.Warn("no spawner: sandboxes are cloned from this process, each a copy of its page tables", "err", err)
		})
		return nil
	}
	if sp.gone.Load() {
		return nil
	}
	return sp
}

// spawners are the process's spawners, one per init binary (by device
// and inode): a request carries all a clone needs, so the runners of one
// process share them, as they share the reaper and the runs' mount
// namespace.
var spawners struct {
	sync.Mutex
	m map[[2]uint64]spawnerStart
}

type spawnerStart struct {
	sp  *spawner
	err error
}

// processSpawner is the spawner started from ib's binary, started at the
// first call.
func processSpawner(ib *initBinary) (*spawner, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(ib.fd.Fd()), &st); err != nil {
		return nil, os.NewSyscallError("fstat the init binary", err)
	}
	key := [2]uint64{st.Dev, st.Ino}
	spawners.Lock()
	defer spawners.Unlock()
	got, ok := spawners.m[key]
	if !ok {
		got.sp, got.err = startSpawner(ib)
		if spawners.m == nil {
			spawners.m = make(map[[2]uint64]spawnerStart)
		}
		spawners.m[key] = got
	}
	return got.sp, got.err
}

// startSpawner starts ib as a spawner and checks that it is of this
// build.
func startSpawner(ib *initBinary) (*spawner, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socketpair", err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "spawner"), os.NewFile(uintptr(fds[1]), "spawner")
	defer theirs.Close()
	// Its stderr is ours, for a panic's trace; its fd SpawnFD the socket.
	files, exe := ib.pass([]*os.File{nil, nil, os.Stderr, theirs}, 0)
	sp := &spawner{}
	started := make(chan error, 1)
	go func() {
		// The spawner's Pdeathsig fires when the thread that started it
		// ends, not this process: this thread stays, locked, for as
		// long as the spawner runs, and ends with it.
		runtime.LockOSThread()
		p, err := os.StartProcess(exe, []string{nsinit.SpawnArg0}, &os.ProcAttr{
			Env:   []string{},
			Files: files,
			// A group of its own, as init's: a terminal's Ctrl-C is
			// the daemon's to act on.
			Sys: &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true},
		})
		started <- err
		if err == nil {
			_, _ = p.Wait()
			// Its inits died with it: the runs from now on clone here.
			sp.gone.Store(true)
		}
	}()
	if err := <-started; err != nil {
		ours.Close()
		return nil, fmt.Errorf("start the spawner: %w", err)
	}
	c, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		return nil, err
	}
	sp.conn = c.(*net.UnixConn)
	// Its hello: the build, as init's. Another build's spawner is not
	// trusted to clone as this one would.
	var hello [128]byte
	n, err := sp.conn.Read(hello[:])
	if err != nil || string(hello[:n]) != nsinit.Build() {
		sp.conn.Close()
		return nil, fmt.Errorf("the spawner %s is not of this build (%q, %v)", ib.path, hello[:n], err)
	}
	return sp, nil
}

// spawn asks the spawner for the clone req says, with files as init's fds
// 0, 1, 2, ... and cgroupFD, when not -1, the cgroup to clone it into.
// It returns init's pid and a pidfd for it.
func (sp *spawner) spawn(req nsinit.SpawnRequest, files []*os.File, cgroupFD int) (int, int, error) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.gone.Load() {
		return 0, -1, errSpawnerGone
	}
	req.Files = len(files)
	fds := make([]int, 0, len(files)+1)
	for _, f := range files {
		fds = append(fds, int(f.Fd()))
	}
	if req.CgroupFD = cgroupFD >= 0; req.CgroupFD {
		fds = append(fds, cgroupFD)
	}
	b, err := json.Marshal(req)
	if err != nil {
		return 0, -1, err
	}
	// A clone takes milliseconds; a spawner that does not answer in
	// this is broken, and the runs after are better cloned here.
	if err := sp.conn.SetDeadline(time.Now().Add(spawnTimeout)); err != nil {
		return 0, -1, sp.fail(err)
	}
	if _, _, err := sp.conn.WriteMsgUnix(b, unix.UnixRights(fds...), nil); err != nil {
		return 0, -1, sp.fail(err)
	}
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := sp.conn.ReadMsgUnix(buf, oob)
	if err == nil && n == 0 {
		err = errors.New("EOF")
	}
	if err != nil {
		return 0, -1, sp.fail(err)
	}
	got := nsinit.SpawnReply{}
	pidfd := -1
	if fds := nsinit.Rights(oob[:oobn]); len(fds) > 0 {
		pidfd = fds[0]
		for _, fd := range fds[1:] {
			unix.Close(fd)
		}
	}
	if err := json.Unmarshal(buf[:n], &got); err != nil || (got.Error == "" && (got.Pid <= 0 || pidfd < 0)) {
		if pidfd >= 0 {
			unix.Close(pidfd)
		}
		return 0, -1, sp.fail(fmt.Errorf("bad reply %q", buf[:n]))
	}
	if got.Error != "" {
		if got.Errno != 0 {
			// As the clone's error here would be: errors.Is finds
			// EACCES (the fallback) and EPERM (cloneHint).
			return 0, -1, fmt.Errorf("spawner: %s: %w", got.Error, syscall.Errno(got.Errno))
		}
		return 0, -1, errors.New("spawner: " + got.Error)
	}
	return got.Pid, pidfd, nil
}

// spawnTimeout bounds one request to the spawner.
const spawnTimeout = 10 * time.Second

// errSpawnerGone: the spawner failed before; runs clone here.
var errSpawnerGone = errors.New("the spawner is gone")

// fail marks the spawner gone after err on its socket: a reply that comes
// late would be taken for the next request's. The socket stays open: the
// spawner lives on until this process ends, and so do the sandboxes it
// cloned (their Pdeathsig is its thread's). An init cloned for the failed
// request, if any, finds its config pipe closed by the start's cleanup,
// and exits.
func (sp *spawner) fail(err error) error {
	sp.gone.Store(true)
	return fmt.Errorf("spawner: %w (%w)", err, errSpawnerGone)
}

// initProc is a sandbox's init as this process sees it: its pid and a
// pidfd, in the poller, so that waiting for init holds no thread.
type initProc struct {
	pid   int
	pidfd *os.File
	// child: this process cloned init, and reaps it.
	child bool
}

func newInitProc(pid, pidfd int, child bool) (*initProc, error) {
	// Nonblocking, so that the poller takes it: a pidfd is readable once
	// its process has exited.
	if err := unix.SetNonblock(pidfd, true); err != nil {
		// Not to be followed: not to be left either.
		_ = unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0)
		if child {
			var info unix.Siginfo
			_ = unix.Waitid(unix.P_PIDFD, pidfd, &info, unix.WEXITED, nil)
		}
		unix.Close(pidfd)
		return nil, os.NewSyscallError("set the pidfd nonblocking", err)
	}
	return &initProc{pid: pid, pidfd: os.NewFile(uintptr(pidfd), "pidfd"), child: child}, nil
}

// wait returns once init has exited and, when this process is its
// parent, is reaped; it then closes the pidfd.
func (p *initProc) wait() {
	defer p.pidfd.Close()
	rc, err := p.pidfd.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Read(func(fd uintptr) bool {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if n, err := unix.Poll(pfd, 0); n == 0 && (err == nil || err == unix.EINTR) {
			return false
		}
		if p.child {
			var info unix.Siginfo
			_ = unix.Waitid(unix.P_PIDFD, int(fd), &info, unix.WEXITED, nil)
		}
		return true
	})
}

// kill sends init SIGKILL, unless it has been waited for: the pidfd
// names init alone, never a process that reused its pid.
func (p *initProc) kill() {
	rc, err := p.pidfd.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = unix.PidfdSendSignal(int(fd), unix.SIGKILL, nil, 0)
	})
}

// dup returns a copy of the pidfd, to pass on: wait may close the
// pidfd at any time, and an fd number read from it outside Control
// could by then name another file.
func (p *initProc) dup() (*os.File, error) {
	rc, err := p.pidfd.SyscallConn()
	if err != nil {
		return nil, err
	}
	var nfd int
	cerr := rc.Control(func(fd uintptr) {
		nfd, err = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	})
	if cerr != nil {
		return nil, fmt.Errorf("init's pidfd: %w", cerr)
	}
	if err != nil {
		return nil, os.NewSyscallError("dup init's pidfd", err)
	}
	return os.NewFile(uintptr(nfd), "pidfd"), nil
}

// checkSpawner is doctor's line on the daemon's spawner: it starts one
// from the init binary, as the daemon would, and takes its hello.
func checkSpawner() Check {
	c := Check{Name: "spawner"}
	ib, err := openInit(InitAuto)
	if err != nil || ib == nil {
		c.Detail = "no init binary to start it from: the daemon clones its sandboxes itself, each clone a copy of its page tables"
		c.Fix = "install " + InitBinaryName + " beside this binary (go install ./cmd/...)"
		return c
	}
	defer ib.fd.Close()
	sp, err := startSpawner(ib)
	if err != nil {
		c.Detail = "cannot start (" + err.Error() + "): the daemon clones its sandboxes itself, each clone a copy of its page tables"
		return c
	}
	sp.conn.Close() // it exits on EOF
	c.OK = true
	c.Detail = "the daemon's sandboxes are cloned by " + nsinit.SpawnArg0 + " (the init binary, started once), not copied from the daemon"
	return c
}
