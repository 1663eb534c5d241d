package nsinit

import (
	"encoding/json"
	"errors"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// The spawner is the init binary started once by a long-lived parent (the
// daemon) to clone its sandboxes' inits in its place. A clone that makes a
// user namespace is a whole fork in Go (os/exec gives up CLONE_VFORK with
// CLONE_NEWUSER: the child must wait for its uid map), which copies the
// parent's page tables and leaves it a copy-on-write fault on each page it
// writes after. From a daemon with thousands of sessions that is
// milliseconds per clone, growing with each session; from this process,
// a few MiB that sit still, it is the same small cost every time.
//
// It holds no state and makes no decision: each request says exactly the
// clone initAttr would make, and brings its fds. It answers with init's
// pid and a pidfd, reaps its children (the inits) when they exit, and
// exits when the parent's end of the socket closes (or by Pdeathsig): its
// inits die with it, by theirs.

// SpawnArg0 is the argv[0] that makes the init binary the spawner; its
// socket to the parent is fd SpawnFD.
const (
	SpawnArg0 = "sandboxd-spawn"
	SpawnFD   = 3
)

// SpawnRequest asks the spawner for one init. Its fds come with it
// (SCM_RIGHTS): the init's fds 0, 1, 2, ... in order, then, when CgroupFD
// is set, the cgroup directory to clone it into.
type SpawnRequest struct {
	// Path is what the child executes: /proc/self/fd/N of one of its fds.
	Path string `json:"path"`
	// Owner is the euid the clone is made with, and so the owner of the
	// new user namespace (internal/isolate, uids_linux.go).
	Owner int `json:"owner"`
	// Cloneflags, UID, GID and IDs: InitAttr's arguments.
	Cloneflags uintptr `json:"cloneflags"`
	UID        int     `json:"uid"`
	GID        int     `json:"gid"`
	IDs        int     `json:"ids"`
	// Files is how many of the fds are init's.
	Files    int  `json:"files"`
	CgroupFD bool `json:"cgroup_fd,omitempty"`
}

// SpawnReply is the spawner's answer: init's pid, with a pidfd for it
// (SCM_RIGHTS), or why the clone failed.
type SpawnReply struct {
	Pid   int    `json:"pid,omitempty"`
	Error string `json:"error,omitempty"`
	// Errno is the clone's or the execve's errno, when it was one.
	Errno int `json:"errno,omitempty"`
}

// InitAttr is how an init is cloned, by its parent or by the spawner: in
// the namespaces of cloneflags, as root of its user namespace, which maps
// ids host ids from uid and gid and nothing else. pidfd receives a pidfd
// for it.
func InitAttr(cloneflags uintptr, uid, gid, ids int, pidfd *int) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{
		Cloneflags:  cloneflags,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: uid, Size: ids}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: gid, Size: ids}},
		// setgroups must work so init (and then the program) can drop
		// the host's supplementary groups: those would still count on
		// host files.
		GidMappingsEnableSetgroups: true,
		Credential:                 &syscall.Credential{Uid: 0, Gid: 0, Groups: []uint32{}},
		// If the process that cloned init dies, init dies, and with it
		// the whole run.
		Pdeathsig: syscall.SIGKILL,
		// A process group of its own: a terminal's Ctrl-C (SIGINT to
		// the foreground group) is the supervisor's to act on, not
		// init's (the Go runtime would exit on it, ending the run or
		// session at once instead of the supervisor's grace).
		Setpgid: true,
		PidFD:   pidfd,
	}
}

// spawnMaxFDs bounds the fds of one request.
const spawnMaxFDs = 64

// spawn serves the parent's requests until its end of the socket closes.
// One thread does every clone, locked for the process's life: Pdeathsig
// fires when the thread that cloned a process exits, not the process.
func spawn() int {
	runtime.LockOSThread()
	unix.CloseOnExec(SpawnFD)
	// SIGCHLD is caught so that exited inits are reaped; the requests'
	// own clones are never waited for here but by their pidfds, there.
	chld := make(chan os.Signal, 1)
	signal.Notify(chld, syscall.SIGCHLD)
	go func() {
		for range chld {
			reapAll()
		}
	}()
	// The hello: the parent sends requests only to a spawner of its
	// own build, as it gives the "go" only to an init of its own.
	if err := unix.Sendmsg(SpawnFD, []byte(Build()), nil, nil, 0); err != nil {
		return 1
	}
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(spawnMaxFDs*4))
	for {
		n, oobn, _, _, err := unix.Recvmsg(SpawnFD, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n == 0 {
			// The parent is gone (or closed its end): so are we, and
			// our inits after us, by their Pdeathsig.
			return 0
		}
		fds := Rights(oob[:oobn])
		reply, pidfd := spawnOne(buf[:n], fds)
		for _, fd := range fds {
			unix.Close(fd)
		}
		if err := sendReply(reply, pidfd); err != nil {
			return 1
		}
	}
}

// spawnOne makes the clone req (JSON) asks for, with fds.
func spawnOne(req []byte, fds []int) (SpawnReply, int) {
	var r SpawnRequest
	if err := json.Unmarshal(req, &r); err != nil {
		return SpawnReply{Error: "bad request: " + err.Error()}, -1
	}
	want := r.Files
	if r.CgroupFD {
		want++
	}
	if r.Files < 3 || len(fds) != want {
		return SpawnReply{Error: "bad request: its fds do not match"}, -1
	}
	pidfd := -1
	attr := InitAttr(r.Cloneflags, r.UID, r.GID, r.IDs, &pidfd)
	if r.CgroupFD {
		attr.UseCgroupFD, attr.CgroupFD = true, fds[r.Files]
	}
	files := make([]uintptr, r.Files)
	for i := range files {
		files[i] = uintptr(fds[i])
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), uintptr(r.Owner), ^uintptr(0)); e != 0 {
		return SpawnReply{Error: "set the euid to the owner: " + e.Error(), Errno: int(e)}, -1
	}
	pid, err := withCaps(func() (int, error) {
		return syscall.ForkExec(r.Path, []string{Arg0}, &syscall.ProcAttr{Env: []string{}, Files: files, Sys: attr})
	})
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), 0, ^uintptr(0)); e != 0 {
		// Cannot happen for a process whose real uid is 0; if it did,
		// no later clone could be trusted to have the right owner.
		panic("restore the spawner's euid: " + e.Error())
	}
	if err != nil {
		var errno syscall.Errno
		errors.As(err, &errno)
		return SpawnReply{Error: "fork/exec " + r.Path + ": " + err.Error(), Errno: int(errno)}, -1
	}
	return SpawnReply{Pid: pid}, pidfd
}

// withCaps runs fn with the effective capabilities restored from the
// permitted set, which the euid change from 0 cleared.
func withCaps(fn func() (int, error)) (int, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0, err
	}
	for i := range data {
		data[i].Effective = data[i].Permitted
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return 0, err
	}
	return fn()
}

// Rights are the fds of a message's SCM_RIGHTS (oob, as received), for
// both ends of the spawner's socket.
func Rights(oob []byte) []int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var fds []int
	for _, m := range msgs {
		if got, err := unix.ParseUnixRights(&m); err == nil {
			fds = append(fds, got...)
		}
	}
	return fds
}

// sendReply sends reply, with pidfd when there is one, and closes it.
func sendReply(reply SpawnReply, pidfd int) error {
	b, _ := json.Marshal(reply)
	var oob []byte
	if pidfd >= 0 {
		oob = unix.UnixRights(pidfd)
		defer unix.Close(pidfd)
	}
	for {
		err := unix.Sendmsg(SpawnFD, b, oob, nil, 0)
		if err != unix.EINTR {
			return err
		}
	}
}

// reapAll reaps every child that has exited.
func reapAll() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
	}
}
