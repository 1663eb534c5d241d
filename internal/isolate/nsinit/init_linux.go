package nsinit

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// MaybeRun runs the init stage, the filler (fill.go) or the spawner
// (spawn_linux.go), and never returns when this process was started as
// one (argv[0] is Arg0, FillArg0 or SpawnArg0); otherwise it returns at once. Call it first thing in main,
// before anything else starts goroutines or opens files.
func MaybeRun() {
	if len(os.Args) == 0 {
		return
	}
	switch os.Args[0] {
	case Arg0:
	case FillArg0:
		// The thread that joins the cgroup makes every write: a tmpfs
		// page is charged to the writing thread's memory cgroup.
		runtime.LockOSThread()
		runtime.GOMAXPROCS(1)
		syscall.Exit(fill())
	case BuildArg0:
		_, _ = os.Stdout.WriteString(Build() + "\n")
		syscall.Exit(0)
	case SpawnArg0:
		runtime.GOMAXPROCS(1)
		_ = os.WriteFile("/proc/self/comm", []byte(SpawnArg0), 0)
		syscall.Exit(spawn())
	default:
		return
	}
	// One OS thread does all the setup, as runc's init does; the Go runtime
	// still starts helper threads, which is why seccomp is installed with
	// TSYNC below.
	runtime.GOMAXPROCS(1)
	runtime.LockOSThread()
	// Executed as /proc/self/fd/N (the init binary) or /proc/self/exe,
	// the kernel named this process "N" or "exe": name it for ps, inside
	// the sandbox and out.
	_ = os.WriteFile("/proc/self/comm", []byte(Arg0), 0)
	// syscall.Exit, not os.Exit: nothing of init's runtime may run after
	// the program's status is out (a race-enabled test binary would sleep
	// a second in os.Exit's hooks, with the whole run waiting on it).
	syscall.Exit(run())
}

// stepError names the setup step that failed.
type stepError struct {
	op  string
	err error
}

func (e *stepError) Error() string { return e.op + ": " + e.err.Error() }
func (e *stepError) Unwrap() error { return e.err }

func step(op string, err error) error {
	if err == nil {
		return nil
	}
	return &stepError{op: op, err: err}
}

func run() int {
	began := time.Now()
	status := os.NewFile(StatusFD, "status")
	// The status pipe must not reach the program.
	unix.CloseOnExec(StatusFD)
	enc := json.NewEncoder(status)

	cfgPipe := os.NewFile(ConfigFD, "config")
	fail := func(err error) int {
		msg := Message{Error: err.Error()}
		if se, ok := err.(*stepError); ok {
			msg.Op, msg.Error = se.op, se.err.Error()
		}
		_ = enc.Encode(msg)
		return ExitSetupFailed
	}

	// The hello: the parent gives the "go" only to an init of its own
	// build (build.go).
	if err := enc.Encode(Message{Build: Build()}); err != nil {
		return ExitSetupFailed
	}
	cfg, err := readConfig(cfgPipe)
	if err != nil {
		return fail(step("read config", err))
	}
	pid, err := setup(cfg, cfgPipe)
	if err != nil {
		return fail(err)
	}
	if err := enc.Encode(Message{Pid: pid, Setup: time.Since(began)}); err != nil {
		// The parent is gone; the program must not run unsupervised.
		// (No program, pid 0, when one enters from outside: kill(0)
		// would signal init's process group.)
		if pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		return ExitSetupFailed
	}
	if cfg.Reaper {
		// Returns only if the exec failed: init then waits itself.
		err := execReaper(cfg.reaperFD(), pid)
		if cfg.Enter {
			// The entering process needs PID 1 in the time namespace
			// of its children, which only an execve puts it in.
			return fail(step("execute the reaper", err))
		}
	}
	es := reap(pid)
	_ = enc.Encode(Message{Exit: &es})
	// Returning exits PID 1: the kernel kills every other process of the
	// namespace (daemons the program left behind included).
	return 0
}

func readConfig(f *os.File) (*Config, error) {
	// The config is small; cap it so a broken parent cannot balloon init.
	var cfg Config
	if err := json.NewDecoder(io.LimitReader(f, 1<<20)).Decode(&cfg); err != nil {
		return nil, err
	}
	if len(cfg.Argv) == 0 && !cfg.Enter {
		return nil, fmt.Errorf("empty argv")
	}
	if cfg.Enter && !cfg.Reaper {
		// Checked before a sandbox is built for nothing.
		return nil, errors.New("entering a sandbox needs the reaper")
	}
	if cfg.UID == 0 || cfg.GID == 0 {
		return nil, fmt.Errorf("refusing to run the program as uid/gid 0")
	}
	return &cfg, nil
}

// waitGo blocks until the parent closes the config pipe: the parent's "go",
// sent once it has checked init's build (the hello). Any byte instead of
// EOF means the parent gave up.
func waitGo(f *os.File) error {
	var b [1]byte
	n, err := f.Read(b[:])
	if n == 0 && err == io.EOF {
		return nil
	}
	if err == nil {
		err = fmt.Errorf("parent aborted the run")
	}
	return err
}

// setup builds the sandbox and starts the program. The order is the one runc
// uses, for the same reasons: the file system first (it needs capabilities),
// then rlimits, then every stray fd marked close-on-exec (CVE-2024-21626: a
// leaked host directory fd is a way out of any new root), capabilities
// dropped from the bounding set, no_new_privs, and seccomp last, as close to
// execve as possible so the filter need not allow setup's syscalls.
//
// On cgroup v1 init joins the run's cgroup first (joinCgroup); the
// parent's "go" comes once it has checked init's build.
func setup(cfg *Config, cfgPipe *os.File) (int, error) {
	// Anything inherited past the two protocol fds is a leak.
	if err := step("close stray fds", unix.CloseRange(StatusFD+1, ^uint(0), unix.CLOSE_RANGE_CLOEXEC)); err != nil {
		return 0, err
	}
	if err := step("join the run's cgroup", joinCgroup(cfg)); err != nil {
		return 0, err
	}
	userLimits, err := buildRoot(cfg)
	if err != nil {
		return 0, err
	}
	defer closeUserLimits(userLimits)
	if err := step("sethostname", unix.Sethostname([]byte(cfg.Hostname))); err != nil {
		return 0, err
	}
	if err := step("bring up loopback", loopbackUp()); err != nil {
		return 0, err
	}
	if err := enterTimeNamespace(); err != nil {
		return 0, err
	}
	if err := setRlimits(cfg.Rlimits); err != nil {
		return 0, err
	}
	if err := step("drop capability bounding set", dropBoundingSet()); err != nil {
		return 0, err
	}
	if err := step("set no_new_privs", unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)); err != nil {
		return 0, err
	}
	if err := step("wait for the parent", waitGo(cfgPipe)); err != nil {
		return 0, err
	}
	cfgPipe.Close()
	// Enter a new cgroup namespace from inside the run's cgroup: that
	// cgroup becomes the namespace's root, so the run sees neither the
	// host's cgroup tree nor its own cgroup's name.
	if err := step("unshare cgroup namespace", unix.Unshare(unix.CLONE_NEWCGROUP)); err != nil {
		return 0, err
	}
	// init's namespaces are made: from here on the run makes none, and
	// holds what else each uid spends per user under the run's caps.
	if err := applyUserLimits(userLimits); err != nil {
		return 0, err
	}
	if cfg.Seccomp {
		if err := step("install seccomp filter", installFilter(cfg.SeccompFilter)); err != nil {
			return 0, err
		}
	}
	if cfg.Enter {
		// No program: the run's process enters from outside. Init's
		// stdio is the program's, which init must not hold; the extra
		// files close on the reaper's execve, after which init is in
		// the time namespace the run's process enters by init's pidfd:
		// their EOF says the sandbox is ready.
		for fd := 0; fd <= 2; fd++ {
			_ = unix.Close(fd)
		}
		return 0, nil
	}
	// The program gets stdio and nothing else; setuid to a non-zero uid
	// clears its permitted and effective capabilities, and execve under
	// no_new_privs can grant none back.
	files := []uintptr{0, 1, 2}
	for i := 0; i < cfg.ExtraFiles; i++ {
		files = append(files, uintptr(StatusFD+1+i))
	}
	attr := &syscall.ProcAttr{
		Dir:   cfg.Dir,
		Env:   cfg.Env,
		Files: files,
		Sys: &syscall.SysProcAttr{
			Credential: &syscall.Credential{Uid: uint32(cfg.UID), Gid: uint32(cfg.GID), Groups: []uint32{}},
			Setsid:     true,
		},
	}
	pid, err := syscall.ForkExec(cfg.Argv[0], cfg.Argv, attr)
	if err != nil {
		return 0, step("exec "+cfg.Argv[0], err)
	}
	// init keeps no copy of the program's stdio: once the program and its
	// children are gone, the parent sees EOF.
	for _, fd := range files {
		_ = unix.Close(int(fd))
	}
	return pid, nil
}

// reaperFD is the reaper's fd, when Reaper is set: the first past the
// program's.
func (cfg *Config) reaperFD() int { return StatusFD + 1 + cfg.ExtraFiles }

// joinCgroup moves init's thread, the one that forks the program and
// executes the reaper (MaybeRun locks it), into the run's cgroup on every
// cgroup v1 hierarchy, by the `tasks` files the parent passed
// (Config.CgroupTasks), and closes them: the program is born in the
// cgroup, and no descriptor that can move a task outlives setup. Init's
// other threads, the Go runtime's, stay where init was cloned; the
// reaper's execve ends them.
func joinCgroup(cfg *Config) error {
	fd := cfg.attachFD() + len(cfg.Attach)
	var err error
	for i := range cfg.CgroupTasks {
		if err == nil {
			err = joinTasks(fd + i)
		} else {
			unix.Close(fd + i)
		}
	}
	return err
}

// joinTasks moves the calling thread into the cgroup whose v1 `tasks`
// file is open at fd (writing 0 names the caller, and takes no global
// lock), and closes fd.
func joinTasks(fd int) error {
	_, err := unix.Write(fd, []byte("0"))
	unix.Close(fd)
	return os.NewSyscallError("write tasks", err)
}

// attachFD is the first of the mounts to attach (Config.Attach): past
// the reaper, when there is one.
func (cfg *Config) attachFD() int {
	if cfg.Reaper {
		return cfg.reaperFD() + 1
	}
	return cfg.reaperFD()
}

// attachMounts attaches the detached mounts init inherited after the
// program's fds and the reaper at cfg.Attach's paths, and closes them:
// from here on, init's namespace has the run's mounts where the rest of
// setup looks for them. buildRoot calls it once its copy of the mount tree
// is private: attached under a mount still shared with the host's, they
// would propagate to the host.
func attachMounts(cfg *Config) error {
	fd := cfg.attachFD()
	for _, p := range cfg.Attach {
		err := unix.MoveMount(fd, "", unix.AT_FDCWD, p, unix.MOVE_MOUNT_F_EMPTY_PATH)
		unix.Close(fd)
		if err != nil {
			return step("attach "+p, os.NewSyscallError("move_mount", err))
		}
		fd++
	}
	return nil
}

// execReaper executes the reaper the parent passed at fd in init's place,
// once the program (pid) runs: it does what reap does, and PID 1 then
// holds a few KiB instead of a Go runtime (internal/isolate,
// reaper_linux.go). It gets the status pipe, for its message, and the
// program's pid as its one environment string; its argv is init's, so
// /proc/1/cmdline reads the same. Init's other fds are close-on-exec
// (setup's close_range), and the program, started already, never sees the
// status pipe.
func execReaper(fd, pid int) error {
	if _, err := unix.FcntlInt(StatusFD, unix.F_SETFD, 0); err != nil {
		return err
	}
	err := syscall.Exec("/proc/self/fd/"+strconv.Itoa(fd), []string{Arg0}, []string{strconv.Itoa(pid)})
	_, _ = unix.FcntlInt(StatusFD, unix.F_SETFD, unix.FD_CLOEXEC)
	return err
}

// reap waits for every child until the program (pid) exits, and returns the
// program's status. Orphans reparented to init are reaped as they die, so
// zombies never pile up against the pids limit.
func reap(pid int) ExitStatus {
	for {
		var ws syscall.WaitStatus
		got, err := syscall.Wait4(-1, &ws, 0, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			// ECHILD: nothing left to wait for; cannot happen before pid
			// was reaped, but never spin.
			return ExitStatus{Code: -1}
		}
		if got != pid {
			continue
		}
		switch {
		case ws.Exited():
			return ExitStatus{Code: ws.ExitStatus()}
		case ws.Signaled():
			return ExitStatus{Code: -1, Signal: int(ws.Signal()), Core: ws.CoreDump()}
		}
	}
}
