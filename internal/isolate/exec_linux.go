package isolate

import (
	"bufio"
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
	"github.com/sandboxd/sandboxd/internal/run"
)

// namespaces every run gets, in the order the result lists them.
var namespaces = []struct {
	name string
	flag uintptr
}{
	{"user", unix.CLONE_NEWUSER},
	{"pid", unix.CLONE_NEWPID},
	{"mount", unix.CLONE_NEWNS},
	{"network", unix.CLONE_NEWNET},
	{"ipc", unix.CLONE_NEWIPC},
	{"uts", unix.CLONE_NEWUTS},
	{"cgroup", unix.CLONE_NEWCGROUP},
}

// drainGrace bounds how long the output may take to reach EOF after the
// run's init exited. Init's exit kills every process of the run, so the
// pipes close at once; the bound only guards against a kernel surprise.
const drainGrace = 2 * time.Second

// killReason is the limit the supervisor acted on, if any.
type killReason int

const (
	killNone killReason = iota
	killTimeout
	killCPU
	killOutput
	killCanceled
)

// Run executes e in the workspace and returns its result once every process
// of the execution is gone and its output is drained. The result is never
// nil; when the sandbox itself failed, its Status is internal_error and the
// error is returned too.
func (r *Runner) Run(ctx context.Context, ws *Workspace, e Exec) (*run.Result, error) {
	res := &run.Result{ID: ws.id, ExitCode: -1, Isolation: r.isolation()}
	err := r.run(ctx, ws, e, res)
	if err != nil {
		res.Status = run.StatusInternalError
		res.Error = err.Error()
		res.Reason = "the sandbox failed: " + err.Error()
	}
	if res.Stdout == nil {
		res.Stdout = []byte{}
	}
	if res.Stderr == nil {
		res.Stderr = []byte{}
	}
	return res, err
}

func (r *Runner) isolation() run.Isolation {
	iso := run.Isolation{
		Backend:    run.BackendProcess,
		Cgroup:     r.cg.version(),
		Seccomp:    !r.cfg.NoSeccomp,
		NoNewPrivs: true,
		Rootfs:     "pivot_root",
		UID:        SandboxUID,
		Network:    "none",
	}
	for _, ns := range namespaces {
		iso.Namespaces = append(iso.Namespaces, ns.name)
	}
	return iso
}

// pipes are the parent's ends and the child's ends of the run's five pipes.
type pipes struct {
	cfgW, statR, outR, errR, inW *os.File
	cfgR, statW, outW, errW, inR *os.File
}

func newPipes() (*pipes, error) {
	p := &pipes{}
	pairs := []struct{ r, w **os.File }{
		{&p.cfgR, &p.cfgW}, {&p.statR, &p.statW}, {&p.outR, &p.outW}, {&p.errR, &p.errW}, {&p.inR, &p.inW},
	}
	for _, pr := range pairs {
		r, w, err := os.Pipe()
		if err != nil {
			p.closeAll()
			return nil, fmt.Errorf("create pipe: %w", err)
		}
		*pr.r, *pr.w = r, w
	}
	return p, nil
}

func (p *pipes) closeChild() {
	for _, f := range []*os.File{p.cfgR, p.statW, p.outW, p.errW, p.inR} {
		if f != nil {
			f.Close()
		}
	}
}

func (p *pipes) closeAll() {
	p.closeChild()
	for _, f := range []*os.File{p.cfgW, p.statR, p.outR, p.errR, p.inW} {
		if f != nil {
			f.Close()
		}
	}
}

func (r *Runner) run(ctx context.Context, ws *Workspace, e Exec, res *run.Result) error {
	if len(e.Argv) == 0 {
		return errors.New("empty argv")
	}
	l := e.Limits
	name := ws.id + "-" + strconv.Itoa(ws.seq)
	ws.seq++
	var ph phases
	ph.mark("begin")
	cg, err := r.cg.create(name, l)
	if err != nil {
		return err
	}
	ph.mark("cgroup_create")
	defer func() {
		if err := cg.destroy(); err != nil {
			r.log.Error("remove run cgroup", "run", ws.id, "err", err)
		}
		ph.mark("cgroup_destroy")
		r.log.Debug("run phases", "run", name, "phases", ph.String())
	}()

	p, err := newPipes()
	if err != nil {
		return err
	}
	defer p.closeAll()

	var cloneflags uintptr
	for _, ns := range namespaces {
		if ns.flag != unix.CLONE_NEWCGROUP {
			// The cgroup namespace is entered by init once it is in its
			// cgroup, so that the cgroup is the namespace's root.
			cloneflags |= ns.flag
		}
	}
	cmd := &exec.Cmd{
		Path: "/proc/self/exe",
		Args: []string{nsinit.Arg0},
		// Not nil: init starts with an empty environment, so the run's
		// PID 1 never shows the supervisor's (/proc/1/environ).
		Env:        []string{},
		Stdin:      p.inR,
		Stdout:     p.outW,
		Stderr:     p.errW,
		ExtraFiles: []*os.File{p.cfgR, p.statW},
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
		},
	}
	if fd := cg.fd(); fd >= 0 {
		cmd.SysProcAttr.UseCgroupFD = true
		cmd.SysProcAttr.CgroupFD = fd
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start sandbox init (are user namespaces enabled?): %w", err)
	}
	start := time.Now()
	ph.mark("clone")
	p.closeChild()
	// From here on init exists: every return path must kill and reap it.
	killInit := func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cg.kill()
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	abort := func(err error) error {
		killInit()
		<-exited
		return err
	}

	// Config first, so init builds the sandbox while the cgroup v1 move
	// (which can wait out an RCU grace period) runs here; the close is the
	// "go" init waits for before starting the program.
	cfg := r.initConfig(ws, e)
	if err := json.NewEncoder(p.cfgW).Encode(&cfg); err != nil {
		return abort(fmt.Errorf("send config to init: %w", err))
	}
	if err := cg.add(cmd.Process.Pid); err != nil {
		return abort(err)
	}
	p.cfgW.Close()
	ph.mark("cgroup_add_config")

	// stdin: copied by its own goroutine, closed after the last byte so
	// the program sees EOF.
	var closeIn sync.Once
	closeStdin := func() { closeIn.Do(func() { p.inW.Close() }) }
	if e.Stdin != nil {
		go func() {
			_, _ = io.Copy(p.inW, e.Stdin)
			closeStdin()
		}()
	} else {
		closeStdin()
	}
	defer closeStdin()

	overflow := make(chan struct{}, 2)
	onOver := func() { overflow <- struct{}{} }
	stdout := &capture{max: int64(l.Output), live: e.Stdout, over: onOver}
	stderr := &capture{max: int64(l.Output), live: e.Stderr, over: onOver}
	var drains sync.WaitGroup
	drains.Add(2)
	go func() { defer drains.Done(); _ = stdout.drain(p.outR) }()
	go func() { defer drains.Done(); _ = stderr.drain(p.errR) }()
	drained := make(chan struct{})
	go func() { drains.Wait(); close(drained) }()

	msgs := make(chan nsinit.Message, 4)
	go readMessages(p.statR, msgs)

	reason := r.supervise(ctx, cg, l.Timeout.Std(), l.CPUTime.Std(), overflow, exited, killInit)
	res.WallTime = time.Since(start)
	ph.mark("setup_and_program")

	// Init is gone, so is every process of the run: the pipes are at EOF
	// or about to be. Bound the wait all the same.
	select {
	case <-drained:
	case <-time.After(drainGrace):
		r.log.Error("output not drained after the run ended; killing the cgroup", "run", ws.id)
		_ = cg.kill()
		_ = p.outR.SetReadDeadline(time.Now())
		_ = p.errR.SetReadDeadline(time.Now())
		<-drained
	}
	ph.mark("drain")
	res.Stdout, res.StdoutTruncated = stdout.result()
	res.Stderr, res.StderrTruncated = stderr.result()

	var setupErr *nsinit.Message
	var exit *nsinit.ExitStatus
	for m := range msgs {
		switch {
		case m.Error != "":
			setupErr = &m
		case m.Exit != nil:
			exit = m.Exit
		case m.Pid != 0:
			ph.note("init_setup", m.Setup)
		}
	}
	st, err := cg.stats()
	if err != nil {
		r.log.Warn("read run cgroup stats", "run", ws.id, "err", err)
	}
	res.CPUTime, res.PeakMemory, res.OOMKills = st.CPU, st.PeakMemory, st.OOMKills
	ph.mark("stats")
	if setupErr != nil {
		return fmt.Errorf("sandbox setup: %s: %s", setupErr.Op, setupErr.Error)
	}
	classify(res, reason, exit, e, ctx.Err())
	return nil
}

// supervise waits for init to exit and enforces the wall deadline, the CPU
// budget, the output caps and cancellation; on any of them it kills the run
// and goes on waiting. It returns the first limit it acted on.
func (r *Runner) supervise(ctx context.Context, cg runCgroup, timeout, cpuLimit time.Duration, overflow <-chan struct{}, exited <-chan error, kill func()) killReason {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	poll := min(max(cpuLimit/20, 10*time.Millisecond), 100*time.Millisecond)
	cpuTick := time.NewTicker(poll)
	defer cpuTick.Stop()
	reason := killNone
	act := func(k killReason) {
		if reason == killNone {
			reason = k
		}
		kill()
	}
	done := ctx.Done()
	for {
		select {
		case <-exited:
			return reason
		case <-deadline.C:
			act(killTimeout)
		case <-cpuTick.C:
			if used, err := cg.cpu(); err == nil && used >= cpuLimit {
				act(killCPU)
			}
		case <-overflow:
			act(killOutput)
		case <-done:
			done = nil
			act(killCanceled)
		}
	}
}

func readMessages(r io.Reader, out chan<- nsinit.Message) {
	defer close(out)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 1<<20)
	for sc.Scan() {
		var m nsinit.Message
		if err := json.Unmarshal(sc.Bytes(), &m); err == nil {
			out <- m
		}
	}
}
