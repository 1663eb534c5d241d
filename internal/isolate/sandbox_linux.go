package isolate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sandboxd/sandboxd/internal/isolate/nsinit"
	"github.com/sandboxd/sandboxd/internal/output"
	"github.com/sandboxd/sandboxd/internal/run"
)

// sandbox is what the three modes (see doc.go) share: the cgroup, the
// pipes, init as PID 1 of the new namespaces with the program under it, and
// the supervisor, which enforces the limits once the sandbox is activated
// and collects the result when init exits. Runner.Run uses one directly;
// HeldProcess and SessionProcess embed one.
type sandbox struct {
	r    *Runner
	ws   *Workspace
	name string
	cg   runCgroup
	// cgMu is held shared while a process is put into cg from outside
	// (startInCgroup), exclusively while cg is destroyed: nothing enters a
	// cgroup while it is being removed, or after.
	cgMu   sync.RWMutex
	cgGone bool
	init   *initProc
	p      *pipes
	// initKind is the init this sandbox started (run.Isolation.Init), and
	// initBin the init binary, nil when this binary was re-executed.
	initKind string
	initBin  *initBinary
	ph       phases
	// initPid is init's host pid.
	initPid int
	// cgroupTasks is how many cgroup `tasks` files init was given to
	// join the run's cgroup by (cgroup v1).
	cgroupTasks int
	// entry, for a sandbox the run's process enters from outside
	// (startOpts.enter), holds copies of the ends init's program would
	// have had (stdin, stdout, stderr, the status pipe) until they are
	// passed on (takeEntry).
	entryMu sync.Mutex
	entry   []*os.File
	enter   bool
	// procDir holds the sandbox's generated /proc files (genfiles_linux.go).
	procDir string

	stdout, stderr *output.Capture
	// marks cut the output into a session's executions; nothing arms them
	// in a run, where they copy the output as it comes.
	marks [2]output.Marks

	overflow     chan struct{}
	exited       chan struct{}
	drained      chan struct{}
	msgs         chan nsinit.Message
	activated    chan activation
	activateOnce sync.Once
	closeStdin   func()

	done chan struct{}
	res  *run.Result
	err  error
	// finalCPU is the sandbox's CPU time at its end.
	finalCPU time.Duration

	// busy (the joins not yet left), tenant and sharesGone are the
	// sandbox's place in the runner's CPU shares, guarded by the runner's
	// cpuShares.mu.
	busy       int
	tenant     string
	sharesGone bool
}

// startOpts is what a mode adds to the sandbox every run gets. The zero
// value is a one-shot run's.
type startOpts struct {
	// control gives the program a control pipe as its fd 3 and a pipe back
	// to the parent as its fd 4.
	control bool
	// background starts the cgroup at the least CPU weight, from init's
	// first instruction: a warm sandbox starting up must not slow the runs
	// being served. Without it the sandbox is busy for Exec.Tenant from
	// the start (cpushares_linux.go).
	background bool
	// enter builds the sandbox for a process that enters it from outside
	// (Zygote): init starts no program (nsinit.Config.Enter), and the
	// sandbox keeps the program's ends of its stdio and init's status
	// pipe to pass on.
	enter bool
}

// setupTimeout bounds building a sandbox, from clone to the program's
// start: a few milliseconds normally; past this the host is broken.
const setupTimeout = 30 * time.Second

// errActivated: Activate was called a second time.
var errActivated = errors.New("process already activated")

// start builds a sandbox for e and returns once the program runs, with
// its supervisor started. ctx bounds the start and, until the sandbox is
// activated, its life.
func (r *Runner) start(ctx context.Context, ws *Workspace, e Exec, o startOpts) (*sandbox, error) {
	if len(e.Argv) == 0 && !o.enter {
		return nil, errors.New("empty argv")
	}
	// Building the sandbox has its own bound: the run's deadline starts
	// when the program does, and no start-up may hang for ever.
	setupCtx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	for {
		s := &sandbox{r: r, ws: ws, name: ws.id + "-" + strconv.Itoa(ws.seq), done: make(chan struct{}), activated: make(chan activation, 1)}
		s.procDir = filepath.Join(ws.gen, "proc-"+strconv.Itoa(ws.seq))
		ws.seq++
		s.ph.mark("begin")
		err := s.build(setupCtx, e, o)
		var stale *staleInitError
		if errors.As(err, &stale) && s.initBin != nil {
			// Nothing of this sandbox remains (build rolled it back):
			// build it again on this binary, as every run will now.
			r.refuseInit(s.initBin, err)
			continue
		}
		if err != nil {
			return nil, err
		}
		go s.supervise(ctx, e.Limits)
		return s, nil
	}
}

// build creates the cgroup and the pipes, clones init, sends its config
// and waits for the program's start. On error nothing of it remains.
func (s *sandbox) build(ctx context.Context, e Exec, o startOpts) error {
	cg, err := s.r.cg.create(s.name, e.Limits)
	if err != nil {
		return err
	}
	s.cg = cg
	cu := makeCleanup(s.destroyCgroup)
	defer cu.Clean()
	if o.background {
		if err := cg.weight(weightLeast); err != nil {
			return fmt.Errorf("lower the warm sandbox's CPU weight: %w", err)
		}
	} else if err := s.r.shares.join(s, e.Tenant); err != nil {
		return fmt.Errorf("set the sandbox's CPU weight: %w", err)
	}
	s.ph.mark("cgroup_create")
	procFiles, err := s.writeProcFiles(e.Limits)
	cu.Add(s.removeProcFiles)
	if err != nil {
		return err
	}

	pp, err := newPipes(o.control)
	if err != nil {
		return err
	}
	s.p = pp
	cu.Add(pp.closeAll)
	extra := pp.programFiles()
	if err := s.clone(extra); err != nil {
		return err
	}
	if o.enter {
		s.enter = true
		if s.entry, err = dupFiles(pp.inR, pp.outW, pp.errW, pp.statW); err != nil {
			pp.closeChild()
			return err
		}
		cu.Add(func() { closeFiles(s.takeEntry()) })
	}
	pp.closeChild()
	// From here on init exists: a failure must kill and reap it.
	cu.Add(s.killAndReap)
	s.msgs = make(chan nsinit.Message, 4)
	go readMessages(json.NewDecoder(s.p.statR), s.msgs)

	if err := s.configure(ctx, e, len(extra), procFiles); err != nil {
		return err
	}
	s.startOutput(e)
	if err := s.awaitProgram(ctx); err != nil {
		return err
	}
	cu.Release()
	return nil
}

// clone starts init in the new namespaces, with the config and status
// pipes as its fds 3 and 4, extra after them, then the reaper and the
// run's mounts to attach.
func (s *sandbox) clone(extra []*os.File) error {
	kind, ib := s.r.initExec()
	init, err := s.startInit(ib, extra)
	if err != nil && ib != nil && errors.Is(err, fs.ErrPermission) {
		// The held binary's execve was refused (a noexec mount or an LSM
		// since it was checked): this run re-executes this binary
		// instead, which builds the same sandbox; later runs try the
		// binary again.
		s.r.log.Warn("starting the init binary failed; this run re-executes this binary instead", "err", err)
		kind, ib = initKindReexec, nil
		init, err = s.startInit(nil, extra)
	}
	if err != nil {
		return fmt.Errorf("start sandbox init%s: %w", cloneHint(err), err)
	}
	s.initKind, s.initBin = kind, ib
	s.init = init
	s.initPid = init.pid
	s.ph.mark("clone")
	s.exited = make(chan struct{})
	go func() { init.wait(); close(s.exited) }()
	return nil
}

// cloneHint is the likely cause of a clone's error, where it is one: the
// errors the kernel gives when user namespaces are off (EPERM, EINVAL) or
// used up (ENOSPC, max_user_namespaces). Not for EMFILE, EAGAIN and the
// like: the cause is then what the error says.
func cloneHint(err error) string {
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOSPC) {
		return " (are user namespaces enabled?)"
	}
	return ""
}

// startInit clones init, executed from ib (this binary when nil), with the
// config and status pipes as its fds 3 and 4, extra after them, then the
// reaper, copies of the run's mounts for init to attach
// (nsinit.Config.Attach, in its order) and on cgroup v1 the cgroup's
// `tasks` files for init to join it by (nsinit.Config.CgroupTasks), then
// ib: init ignores it, and it is closed when init executes the reaper or
// the program starts (setup's close_range).
func (s *sandbox) startInit(ib *initBinary, extra []*os.File) (*initProc, error) {
	pp := s.p
	files := append([]*os.File{pp.cfgR, pp.statW}, extra...)
	if s.r.reaper != nil {
		files = append(files, s.r.reaper)
	}
	for _, p := range s.ws.attach() {
		f, err := s.r.mounts.clone(p)
		if err != nil {
			return nil, err
		}
		// Init's copy is all it needs: attached in its namespace, the
		// mount lives as long as that does.
		defer f.Close()
		files = append(files, f)
	}
	tasks, err := s.cg.openTasks()
	if err != nil {
		return nil, err
	}
	for _, f := range tasks {
		defer f.Close()
	}
	files = append(files, tasks...)
	s.cgroupTasks = len(tasks)
	path := "/proc/self/exe"
	if ib != nil {
		files, path = ib.pass(files, 3) // after stdio
	}
	files = append([]*os.File{pp.inR, pp.outW, pp.errW}, files...)
	flags, ids := initCloneflags(), s.ws.dir.ids
	cgroupFD, err := s.cg.openDir()
	if err != nil {
		return nil, err
	}
	if cgroupFD >= 0 {
		defer unix.Close(cgroupFD)
	}
	if sp := s.r.spawner(ib); sp != nil {
		pid, pidfd, err := sp.spawn(nsinit.SpawnRequest{Path: path, Owner: ids.uid, Cloneflags: flags, UID: ids.uid, GID: ids.gid, IDs: IDsPerSandbox}, files, cgroupFD)
		if !errors.Is(err, errSpawnerGone) {
			if err != nil {
				return nil, err
			}
			return newInitProc(pid, pidfd, false)
		}
		s.r.log.Warn("the spawner failed: sandboxes are cloned from this process from now on", "err", err)
	}
	pidfd := -1
	attr := nsinit.InitAttr(flags, ids.uid, ids.gid, IDsPerSandbox, &pidfd)
	if cgroupFD >= 0 {
		attr.UseCgroupFD, attr.CgroupFD = true, cgroupFD
	}
	fds := make([]uintptr, len(files))
	for i, f := range files {
		fds[i] = f.Fd()
	}
	var pid int
	err = asOwner(func() (err error) {
		// Not nil: init starts with an empty environment, so the run's
		// PID 1 never shows the supervisor's (/proc/1/environ).
		pid, _, err = syscall.StartProcess(path, []string{nsinit.Arg0}, &syscall.ProcAttr{Env: []string{}, Files: fds, Sys: attr})
		return err
	}, ids.uid)
	runtime.KeepAlive(files) // their fds were passed by number
	if err != nil {
		return nil, &os.PathError{Op: "fork/exec", Path: path, Err: err}
	}
	return newInitProc(pid, pidfd, true)
}

// initCloneflags are the namespaces init is cloned in: every namespace
// of the run but the cgroup and time namespaces. Its user namespace maps
// the run's slot of host ids (uids_linux.go, nsinit.InitAttr) and nothing
// else: a program can drop to nobody as in a container, and every id it
// can hold is the run's own.
func initCloneflags() uintptr {
	var cloneflags uintptr
	for _, ns := range namespaces {
		switch ns.flag {
		case unix.CLONE_NEWCGROUP:
			// The cgroup namespace is entered by init once it is in its
			// cgroup, so that the cgroup is the namespace's root.
		case unix.CLONE_NEWTIME:
			// init makes the time namespace for its children: clone
			// cannot take it (0x80 is its exit signal's bits), and the
			// offsets are set before the program enters it.
		default:
			cloneflags |= ns.flag
		}
	}
	return cloneflags
}

// configure sends init its config, checks init's hello and closes the
// config pipe: the "go" init waits for before starting the program.
func (s *sandbox) configure(ctx context.Context, e Exec, extraFiles int, procFiles []nsinit.ProcFile) error {
	cfg := s.r.initConfig(s.ws, e)
	cfg.ExtraFiles = extraFiles
	cfg.ProcFiles = procFiles
	cfg.CgroupTasks = s.cgroupTasks
	cfg.Enter = s.enter
	if err := json.NewEncoder(s.p.cfgW).Encode(&cfg); err != nil {
		return fmt.Errorf("send config to init: %w", err)
	}
	s.ph.mark("config")
	if err := s.awaitHello(ctx); err != nil {
		return err
	}
	s.p.cfgW.Close()
	s.ph.mark("init_hello")
	return nil
}

// startOutput starts the drains of the program's output into the captures
// and the reader of init's messages.
func (s *sandbox) startOutput(e Exec) {
	var once sync.Once
	s.closeStdin = func() { once.Do(func() { s.p.inW.Close() }) }
	s.overflow = make(chan struct{}, 2)
	onOver := func() { s.overflow <- struct{}{} }
	// Live writers from the start: a run's program may write before it is
	// activated (SetLive would replay it, but in order is better).
	s.stdout = output.New(int64(e.Limits.Output), e.Stdout, onOver)
	s.stderr = output.New(int64(e.Limits.Output), e.Stderr, onOver)
	s.stdout.SetSpool(e.Spool)
	s.stderr.SetSpool(e.Spool)
	var drains sync.WaitGroup
	drains.Add(2)
	go func() { defer drains.Done(); _ = s.marks[0].Copy(s.stdout, s.p.outR) }()
	go func() { defer drains.Done(); _ = s.marks[1].Copy(s.stderr, s.p.errR) }()
	s.drained = make(chan struct{})
	go func() { drains.Wait(); close(s.drained) }()
}

// awaitHello waits for init's first message, its build (nsinit/build.go):
// an init binary of another build gets no "go" (staleInitError).
func (s *sandbox) awaitHello(ctx context.Context) error {
	m, err := s.nextMessage(ctx)
	if err != nil {
		return err
	}
	if m.Build != nsinit.Build() {
		path := "/proc/self/exe"
		if s.initBin != nil {
			path = s.initBin.path
		}
		return &staleInitError{path: path, build: run.Clip(m.Build, run.MaxName)}
	}
	return nil
}

// awaitProgram waits for init's next message: the program's pid, or why
// setup failed.
func (s *sandbox) awaitProgram(ctx context.Context) error {
	m, err := s.nextMessage(ctx)
	if err != nil {
		return err
	}
	s.ph.note("init_setup", m.Setup)
	s.ph.mark("setup")
	return nil
}

// nextMessage is init's next message during setup; init's silence or its
// report of a failed step is an error.
func (s *sandbox) nextMessage(ctx context.Context) (nsinit.Message, error) {
	// The copy of the status pipe a sandbox for a fork server keeps
	// (startOpts.enter) holds its EOF off after init is gone: let it go.
	var exited <-chan struct{}
	if s.enter {
		exited = s.exited
	}
	for {
		select {
		case m, ok := <-s.msgs:
			switch {
			case !ok:
				return m, s.setupError(nil)
			case m.Error != "":
				return m, s.setupError(&m)
			}
			return m, nil
		case <-exited:
			closeFiles(s.takeEntry())
			exited = nil
		case <-ctx.Done():
			return nsinit.Message{}, fmt.Errorf("sandbox setup: %w", ctx.Err())
		}
	}
}

// setupError says why setup failed: init's message, or its silence.
// The message crossed the sync pipe from inside the sandbox, so its text
// is bounded before it becomes an error (and a Reason, a log line).
func (s *sandbox) setupError(m *nsinit.Message) error {
	if m != nil {
		return fmt.Errorf("sandbox setup: %s: %s", run.Clip(m.Op, run.MaxName), run.Clip(m.Error, run.MaxMessage))
	}
	return errors.New("sandbox init ended before starting the program")
}

// findProgram returns the program's host pid: the cgroup's one process
// besides init, as long as the program has not started anything (a held
// or session program waits on its control pipe). 0 if not found.
func (s *sandbox) findProgram() int {
	pids, err := s.cg.pids()
	if err != nil {
		return 0
	}
	for _, pid := range pids {
		if pid != s.initPid {
			return pid
		}
	}
	return 0
}

// inCgroup reports whether pid is one of the sandbox's processes now.
func (s *sandbox) inCgroup(pid int) bool {
	pids, err := s.cg.pids()
	return err == nil && slices.Contains(pids, pid)
}

// pidfdIn opens a pidfd of pid, a process of the sandbox found earlier,
// and checks that it still is one. A pid names whichever process has it
// when pidfd_open runs: had the process been reaped and its pid reused by
// a host process in between, the pidfd would pin that one. So the pidfd
// is checked after: its process alive (a signal 0 through it) and the pid
// in the cgroup mean the pidfd's process is the sandbox's, since a live
// process's pid is its own and no process leaves the sandbox's cgroup.
// Opened per use, not held: a held pidfd would be one more descriptor per
// session in the daemon.
func (s *sandbox) pidfdIn(pid int) (int, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return -1, fmt.Errorf("the program (pid %d) is not in its sandbox: %w", pid, os.NewSyscallError("pidfd_open", err))
	}
	if err := unix.PidfdSendSignal(fd, 0, nil, 0); err != nil || !s.inCgroup(pid) {
		unix.Close(fd)
		return -1, fmt.Errorf("the program (pid %d) is not in its sandbox", pid)
	}
	return fd, nil
}

// feedStdin copies r to the program's stdin by a goroutine of its own and
// closes it after the last byte, so the program sees EOF; nil is EOF at
// once.
func (s *sandbox) feedStdin(r io.Reader) {
	if r == nil {
		s.closeStdin()
		return
	}
	go func() {
		_, _ = io.Copy(s.p.inW, r)
		s.closeStdin()
	}()
}

// Kill ends the sandbox (and every process of it) at once.
func (s *sandbox) Kill() { s.kill() }

func (s *sandbox) kill() {
	s.init.kill()
	_ = s.cg.kill()
}

// killAndReap kills init and waits until it is reaped, for a start that
// failed before the supervisor took over.
func (s *sandbox) killAndReap() {
	s.kill()
	<-s.exited
}

// Wait returns the result once every process of the sandbox is gone, its
// output is drained and its cgroup removed.
func (s *sandbox) Wait() (*run.Result, error) {
	<-s.done
	return s.res, s.err
}

// Done is closed when the sandbox has ended.
func (s *sandbox) Done() <-chan struct{} { return s.done }

func (s *sandbox) destroyCgroup() {
	s.r.shares.drop(s)
	s.cgMu.Lock()
	defer s.cgMu.Unlock()
	s.cgGone = true
	if err := s.cg.destroy(); err != nil {
		s.r.log.Error("remove run cgroup", "run", s.ws.id, "err", err)
	}
	s.ph.mark("cgroup_destroy")
}

// takeEntry returns the ends kept for the process entering the sandbox
// (startOpts.enter), once: the caller closes them.
func (s *sandbox) takeEntry() []*os.File {
	s.entryMu.Lock()
	defer s.entryMu.Unlock()
	e := s.entry
	s.entry = nil
	return e
}

// dupFiles duplicates each of files (close-on-exec).
func dupFiles(files ...*os.File) ([]*os.File, error) {
	out := make([]*os.File, 0, len(files))
	for _, f := range files {
		fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			closeFiles(out)
			return nil, os.NewSyscallError("dup", err)
		}
		out = append(out, os.NewFile(uintptr(fd), f.Name()))
	}
	return out, nil
}

func closeFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}
