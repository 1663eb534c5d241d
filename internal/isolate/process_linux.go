package isolate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sandboxd/sandboxd/internal/isolate/nsinit"
	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/output"
	"github.com/sandboxd/sandboxd/internal/run"
)

// Process is a started sandbox: init is PID 1 and the program is running.
// A held Process (Start with hold) has its program waiting on its control
// pipe (fd 3) and no deadline armed yet: Activate gives it its limits, its
// I/O and its input, and starts the clock. The program says it is ready to
// take its input by writing a byte to, or closing, its fd 4 (WaitReady).
// This is what a warm pool keeps.
type Process struct {
	r    *Runner
	ws   *Workspace
	name string
	cg   runCgroup
	cmd  *exec.Cmd
	p    *pipes
	ph   phases
	// initPid is init's host pid; progPid the program's (for prlimit).
	initPid, progPid int
	// held is set for a Process started with hold: its limits are the
	// pool's until Activate replaces them.
	held bool
	// session is set for a Process started by StartSession (see
	// session_linux.go): it keeps its control pipe, answers on its fd 4,
	// and its output is cut per execution with marks written through
	// syncW, the parent's copies of the output pipes' write ends.
	session bool
	marks   [2]output.Marks
	// sessMu guards syncW and progFD (a pidfd of a session's program, or
	// -1), which finish closes while the session may be using them.
	sessMu sync.Mutex
	// finalCPU is the sandbox's CPU time at its end (CPUTime after done).
	finalCPU time.Duration
	syncW    [2]*os.File
	progFD   int

	stdout, stderr *output.Capture
	overflow       chan struct{}
	exited         chan error
	drained        chan struct{}
	msgs           chan nsinit.Message
	activated      chan activation
	activateOnce   sync.Once
	closeStdin     func()

	done chan struct{}
	res  *run.Result
	err  error
}

// setupTimeout bounds building a sandbox, from clone to the program's
// start: a few milliseconds normally; past this the host is broken.
const setupTimeout = 30 * time.Second

type activation struct {
	ctx    context.Context
	limits limits.Limits
	at     time.Time
	cpu    time.Duration
}

// Start starts e in the workspace and returns once the program runs. With
// hold, the program gets a control pipe as fd 3 and the Process waits for
// Activate; without, it is activated with e at once. ctx bounds the start
// and, until activation, the Process's life.
func (r *Runner) Start(ctx context.Context, ws *Workspace, e Exec, hold bool) (*Process, error) {
	if len(e.Argv) == 0 {
		return nil, errors.New("empty argv")
	}
	p, err := r.newProcess(ctx, ws, e, hold, false)
	if err != nil {
		return nil, err
	}
	if !hold {
		if err := p.Activate(ctx, Activation{Limits: e.Limits, Stdin: e.Stdin, Stdout: e.Stdout, Stderr: e.Stderr}); err != nil {
			p.Kill()
			_, _ = p.Wait()
			return nil, err
		}
	}
	return p, nil
}

// newProcess builds the sandbox and starts its supervisor.
func (r *Runner) newProcess(ctx context.Context, ws *Workspace, e Exec, hold, session bool) (*Process, error) {
	p := &Process{r: r, ws: ws, name: ws.id + "-" + strconv.Itoa(ws.seq), done: make(chan struct{}), activated: make(chan activation, 1), progFD: -1, session: session}
	ws.seq++
	p.ph.mark("begin")
	// Building the sandbox has its own bound: the run's deadline starts
	// when the program does, and no start-up may hang for ever.
	setupCtx, cancel := context.WithTimeout(ctx, setupTimeout)
	err := p.start(setupCtx, e, hold)
	cancel()
	if err != nil {
		return nil, err
	}
	go p.supervise(ctx, e.Limits)
	return p, nil
}

// start creates the cgroup and the pipes, clones init, sends its config,
// and waits for the program's pid. On error nothing of it remains.
func (p *Process) start(ctx context.Context, e Exec, hold bool) (err error) {
	r := p.r
	cg, err := r.cg.create(p.name, e.Limits)
	if err != nil {
		return err
	}
	p.cg = cg
	if hold {
		if err := cg.background(true); err != nil {
			p.destroyCgroup()
			return fmt.Errorf("lower the warm sandbox's CPU weight: %w", err)
		}
	}
	p.ph.mark("cgroup_create")
	pp, err := newPipes(hold)
	if err != nil {
		p.destroyCgroup()
		return err
	}
	p.p = pp
	defer func() {
		if err != nil {
			pp.closeAll()
			p.closeSession()
			p.destroyCgroup()
		}
	}()

	var cloneflags uintptr
	for _, ns := range namespaces {
		if ns.flag != unix.CLONE_NEWCGROUP {
			// The cgroup namespace is entered by init once it is in its
			// cgroup, so that the cgroup is the namespace's root.
			cloneflags |= ns.flag
		}
	}
	extra := []*os.File{pp.cfgR, pp.statW}
	if hold {
		extra = append(extra, pp.ctlR, pp.rdyW)
	}
	cmd := &exec.Cmd{
		Path: "/proc/self/exe",
		Args: []string{nsinit.Arg0},
		// Not nil: init starts with an empty environment, so the run's
		// PID 1 never shows the supervisor's (/proc/1/environ).
		Env:        []string{},
		Stdin:      pp.inR,
		Stdout:     pp.outW,
		Stderr:     pp.errW,
		ExtraFiles: extra,
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags: cloneflags,
			UidMappings: []syscall.SysProcIDMap{
				{ContainerID: 0, HostID: r.cfg.HostUID, Size: 1},
				{ContainerID: SandboxUID, HostID: r.cfg.HostUID + SandboxUID, Size: 1},
			},
			GidMappings: []syscall.SysProcIDMap{
				{ContainerID: 0, HostID: r.cfg.HostGID, Size: 1},
				{ContainerID: SandboxUID, HostID: r.cfg.HostGID + SandboxUID, Size: 1},
			},
			// setgroups must work so init (and then the program) can drop
			// the host's supplementary groups: those would still count on
			// host files.
			GidMappingsEnableSetgroups: true,
			Credential:                 &syscall.Credential{Uid: 0, Gid: 0, Groups: []uint32{}},
			// If this process dies, init dies, and with it the whole run.
			Pdeathsig: syscall.SIGKILL,
			// A process group of its own: a terminal's Ctrl-C (SIGINT to
			// the foreground group) is the supervisor's to act on, not
			// init's (the Go runtime would exit on it, ending the run or
			// session at once instead of the supervisor's grace).
			Setpgid: true,
		},
	}
	if fd := cg.fd(); fd >= 0 {
		cmd.SysProcAttr.UseCgroupFD = true
		cmd.SysProcAttr.CgroupFD = fd
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start sandbox init (are user namespaces enabled?): %w", err)
	}
	p.cmd = cmd
	p.initPid = cmd.Process.Pid
	p.ph.mark("clone")
	if p.session {
		// Kept, not closed with the child's ends: the parent writes its
		// cut marks through them (Cut). finish closes them first.
		p.syncW = [2]*os.File{pp.outW, pp.errW}
		pp.outW, pp.errW = nil, nil
	}
	pp.closeChild()
	p.exited = make(chan error, 1)
	go func() { p.exited <- cmd.Wait() }()
	// From here on init exists: a failure must kill and reap it.
	abort := func(err error) error {
		p.kill()
		<-p.exited
		return err
	}

	// Config first, so init builds the sandbox while the cgroup v1 move
	// (which can wait out an RCU grace period) runs here; the close is the
	// "go" init waits for before starting the program.
	cfg := r.initConfig(p.ws, e)
	if hold {
		cfg.ExtraFiles = 2
	}
	if err := json.NewEncoder(pp.cfgW).Encode(&cfg); err != nil {
		return abort(fmt.Errorf("send config to init: %w", err))
	}
	if err := cg.add(p.initPid); err != nil {
		return abort(err)
	}
	pp.cfgW.Close()
	p.ph.mark("cgroup_add_config")

	var once sync.Once
	p.closeStdin = func() { once.Do(func() { pp.inW.Close() }) }
	p.overflow = make(chan struct{}, 2)
	onOver := func() { p.overflow <- struct{}{} }
	// Live writers from the start: an activated-at-once program may write
	// before Activate runs (setLive would replay it, but in order is better).
	p.stdout = output.New(int64(e.Limits.Output), e.Stdout, onOver)
	p.stderr = output.New(int64(e.Limits.Output), e.Stderr, onOver)
	var drains sync.WaitGroup
	drains.Add(2)
	go func() { defer drains.Done(); _ = p.marks[0].Copy(p.stdout, pp.outR) }()
	go func() { defer drains.Done(); _ = p.marks[1].Copy(p.stderr, pp.errR) }()
	p.drained = make(chan struct{})
	go func() { drains.Wait(); close(p.drained) }()

	// The first message is the program's pid, or why setup failed.
	p.msgs = make(chan nsinit.Message, 4)
	go readMessages(json.NewDecoder(pp.statR), p.msgs)
	select {
	case m, ok := <-p.msgs:
		switch {
		case !ok:
			return abort(p.setupError(nil))
		case m.Error != "":
			return abort(p.setupError(&m))
		}
		p.ph.note("init_setup", m.Setup)
		p.ph.mark("setup")
	case <-ctx.Done():
		return abort(fmt.Errorf("sandbox setup: %w", ctx.Err()))
	}
	if hold {
		p.held = true
		p.progPid = p.findProgram()
		if p.session && p.progPid != 0 {
			fd, err := unix.PidfdOpen(p.progPid, 0)
			if err != nil {
				return abort(fmt.Errorf("open the program's pidfd: %w", os.NewSyscallError("pidfd_open", err)))
			}
			p.progFD = fd
		}
	}
	return nil
}

// setupError waits for init to be gone and says why setup failed.
func (p *Process) setupError(m *nsinit.Message) error {
	if m != nil {
		return fmt.Errorf("sandbox setup: %s: %s", m.Op, m.Error)
	}
	return errors.New("sandbox init ended before starting the program")
}

// WaitReady waits until a held program has written to or closed its
// readiness pipe (fd 4), that is, has done its start-up and waits for its
// input; or until it ends, or ctx does.
func (p *Process) WaitReady(ctx context.Context) error {
	if p.p.rdyR == nil {
		return errors.New("not a held process")
	}
	ready := make(chan error, 1)
	go func() {
		var b [1]byte
		_, err := p.p.rdyR.Read(b[:])
		if errors.Is(err, io.EOF) {
			err = nil
		}
		ready <- err
	}()
	select {
	case err := <-ready:
		select {
		case <-p.done:
			return errors.New("the program ended during its start-up")
		default:
		}
		return err
	case <-p.done:
		return errors.New("the program ended during its start-up")
	case <-ctx.Done():
		_ = p.p.rdyR.SetReadDeadline(time.Now())
		return ctx.Err()
	}
}

// findProgram returns the program's host pid: the cgroup's one process
// besides init (the program has not started anything yet).
func (p *Process) findProgram() int {
	pids, err := p.cg.pids()
	if err != nil {
		return 0
	}
	for _, pid := range pids {
		if pid != p.initPid {
			return pid
		}
	}
	return 0
}

// Activate puts a held Process to use (Start without hold calls it): it
// applies the limits, connects the I/O, sends the control input, and starts
// the deadline and the CPU budget. ctx now bounds the run: its end kills it.
func (p *Process) Activate(ctx context.Context, a Activation) error {
	err := errors.New("process already activated")
	p.activateOnce.Do(func() { err = p.activate(ctx, a) })
	return err
}

func (p *Process) activate(ctx context.Context, a Activation) error {
	p.ph.mark("held")
	if p.held {
		// A run must never go on with the pool's generous limits.
		if p.progPid == 0 {
			return errors.New("apply limits: the held program's pid is unknown")
		}
		if err := p.cg.update(a.Limits); err != nil {
			return fmt.Errorf("apply limits: %w", err)
		}
		if err := p.cg.background(false); err != nil {
			return fmt.Errorf("restore CPU weight: %w", err)
		}
		for _, rl := range rlimits(a.Limits) {
			lim := unix.Rlimit{Cur: rl.Value, Max: rl.Value}
			if err := unix.Prlimit(p.progPid, rl.Resource, &lim, nil); err != nil {
				return fmt.Errorf("apply rlimit %s: %w", rl.Name, err)
			}
		}
	}
	cpu, _ := p.cg.cpu()
	p.stdout.SetLive(a.Stdout, int64(a.Limits.Output))
	p.stderr.SetLive(a.Stderr, int64(a.Limits.Output))
	// stdin: copied by its own goroutine, closed after the last byte so
	// the program sees EOF.
	if a.Stdin != nil {
		go func() {
			_, _ = io.Copy(p.p.inW, a.Stdin)
			p.closeStdin()
		}()
	} else {
		p.closeStdin()
	}
	if p.session {
		// Each execution sets its own output writers, cap and overflow
		// action (SetOutput); the control pipe stays open.
		p.stdout.SetOver(nil)
		p.stderr.SetOver(nil)
	} else if p.p.ctlW != nil {
		_, err := p.p.ctlW.Write(a.Control)
		p.p.ctlW.Close()
		if err != nil {
			return fmt.Errorf("send control input: %w", err)
		}
	}
	p.ph.mark("activate")
	p.activated <- activation{ctx: ctx, limits: a.Limits, at: time.Now(), cpu: cpu}
	return nil
}

// Kill ends the Process (and every process of it) at once.
func (p *Process) Kill() { p.kill() }

func (p *Process) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cg.kill()
}

// Wait returns the result once every process of the run is gone, its
// output is drained and its cgroup removed.
func (p *Process) Wait() (*run.Result, error) {
	<-p.done
	return p.res, p.err
}

// Done is closed when the Process has ended.
func (p *Process) Done() <-chan struct{} { return p.done }

// supervise enforces the limits once the Process is activated (the wall
// deadline, the CPU budget, the output caps, cancellation) and, when init
// exits, collects the result.
func (p *Process) supervise(ctx context.Context, startLimits limits.Limits) {
	var (
		act      activation
		active   bool
		deadline <-chan time.Time
		cpuTick  <-chan time.Time
		reason   = killNone
		done     = ctx.Done()
		stops    []func()
	)
	kill := func(k killReason) {
		if reason == killNone {
			reason = k
		}
		p.kill()
	}
	begin := func(a activation) {
		act, active = a, true
		done = act.ctx.Done()
		if p.session {
			// A session's executions have their own deadlines and
			// budgets, enforced by the session (Interrupt, Kill).
			return
		}
		t := time.NewTimer(act.limits.Timeout.Std())
		stops = append(stops, func() { t.Stop() })
		deadline = t.C
		poll := min(max(act.limits.CPUTime.Std()/20, 10*time.Millisecond), 100*time.Millisecond)
		tick := time.NewTicker(poll)
		stops = append(stops, tick.Stop)
		cpuTick = tick.C
	}
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()
loop:
	for {
		select {
		case <-p.exited:
			if !active {
				// A program that exits at once can beat its activation
				// to this select.
				select {
				case act = <-p.activated:
					active = true
				default:
				}
			}
			break loop
		case a := <-p.activated:
			begin(a)
		case <-done:
			if !active {
				select {
				case a := <-p.activated:
					// The start's context ended after Activate replaced
					// it (a session ends its start-up context right
					// after activating): the activation's counts.
					begin(a)
					continue
				default:
				}
			}
			done = nil
			kill(killCanceled)
		case <-deadline:
			kill(killTimeout)
		case <-cpuTick:
			if used, err := p.cg.cpu(); err == nil && used-act.cpu >= act.limits.CPUTime.Std() {
				kill(killCPU)
			}
		case <-p.overflow:
			kill(killOutput)
		}
	}
	if !active {
		act = activation{ctx: ctx, limits: startLimits, at: time.Now()}
	}
	p.res, p.err = p.finish(act, reason)
	close(p.done)
}

// finish runs after init exited: every process of the run is gone (init's
// death took them), so the pipes are at EOF or about to be; the wait is
// bounded all the same. Then the figures, the cgroup's removal, the status.
func (p *Process) finish(act activation, reason killReason) (*run.Result, error) {
	r := p.r
	res := &run.Result{ID: p.ws.id, ExitCode: -1, Isolation: r.isolation()}
	res.WallTime = time.Since(act.at)
	p.ph.mark("program")
	defer p.p.closeAll()
	p.closeSession()
	p.closeStdin()
	select {
	case <-p.drained:
	case <-time.After(drainGrace):
		r.log.Error("output not drained after the run ended; killing the cgroup", "run", p.ws.id)
		_ = p.cg.kill()
		_ = p.p.outR.SetReadDeadline(time.Now())
		_ = p.p.errR.SetReadDeadline(time.Now())
		<-p.drained
	}
	p.ph.mark("drain")
	res.Stdout, res.StdoutTruncated = p.stdout.Result()
	res.Stderr, res.StderrTruncated = p.stderr.Result()
	var setupErr *nsinit.Message
	var exit *nsinit.ExitStatus
	for m := range p.msgs {
		switch {
		case m.Error != "":
			setupErr = &m
		case m.Exit != nil:
			exit = m.Exit
		}
	}
	st, err := p.cg.stats()
	if err != nil {
		r.log.Warn("read run cgroup stats", "run", p.ws.id, "err", err)
	}
	res.CPUTime, res.PeakMemory, res.OOMKills = st.CPU-act.cpu, st.PeakMemory, st.OOMKills
	p.finalCPU = st.CPU
	p.ph.mark("stats")
	p.destroyCgroup()
	r.log.Debug("run phases", "run", p.name, "phases", p.ph.String())
	if setupErr != nil {
		err := p.setupError(setupErr)
		return failed(res.Isolation, p.ws.id, err), err
	}
	classify(res, reason, exit, Exec{Limits: act.limits}, act.ctx.Err())
	return res, nil
}

func (p *Process) destroyCgroup() {
	if err := p.cg.destroy(); err != nil {
		p.r.log.Error("remove run cgroup", "run", p.ws.id, "err", err)
	}
	p.ph.mark("cgroup_destroy")
}
