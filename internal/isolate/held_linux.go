package isolate

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sandboxd/sandboxd/internal/isolate/nsinit"
	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/workspace"
)

// HeldProcess is a sandbox started ahead of its run: what a warm pool
// keeps. Its program runs with the limits it was started with (the pool's)
// at the least CPU weight, and waits on its control pipe (fd 3); no
// deadline is armed. It says it is ready for its input by writing a byte
// to, or closing, its fd 4 (WaitReady). Activate puts it to use: from
// there it is a run like any other, ended by Wait or Kill.
type HeldProcess struct {
	*sandbox
	// progPid is the program's host pid, for its rlimits; 0 if not found.
	progPid int
	// zygote, when set, forks the run's process into the sandbox at
	// Activate (StartEntered).
	zygote *Zygote
}

// StartHeld starts e held and returns once the program runs. ctx bounds
// the start and, until Activate, the HeldProcess's life.
func (r *Runner) StartHeld(ctx context.Context, ws *Workspace, e Exec) (*HeldProcess, error) {
	s, err := r.start(ctx, ws, e, startOpts{control: true, background: true})
	if err != nil {
		return nil, err
	}
	return &HeldProcess{sandbox: s, progPid: s.findProgram()}, nil
}

// StartEntered starts a sandbox, as StartHeld does, for z to fork the
// run's process into at Activate, where Activation.Control is the
// control z's warm runner reads. Until then no process runs in it but
// PID 1 (nsinit.Config.Enter); e.Argv is not used.
func (r *Runner) StartEntered(ctx context.Context, ws *Workspace, e Exec, z *Zygote) (*HeldProcess, error) {
	e.Argv = nil
	s, err := r.start(ctx, ws, e, startOpts{control: true, background: true, enter: true})
	if err != nil {
		return nil, err
	}
	return &HeldProcess{sandbox: s, zygote: z}, nil
}

// errNoReaper: a sandbox is entered through PID 1 once it is the reaper.
var errNoReaper = errors.New("a fork server needs the reaper (an executable memfd; sandboxd doctor says why there is none)")

// Entered reports whether the run's process is forked into the sandbox
// by a zygote (StartEntered).
func (h *HeldProcess) Entered() bool { return h.zygote != nil }

// WaitReady waits until the program has written to or closed its
// readiness pipe (fd 4), that is, has done its start-up and waits for its
// input; or until it ends, or ctx does.
func (h *HeldProcess) WaitReady(ctx context.Context) error {
	ready := make(chan error, 1)
	go func() {
		var b [1]byte
		_, err := h.p.rdyR.Read(b[:])
		if errors.Is(err, io.EOF) {
			err = nil
		}
		ready <- err
	}()
	select {
	case err := <-ready:
		select {
		case <-h.done:
			return errors.New("the program ended during its start-up")
		default:
		}
		return err
	case <-h.done:
		return errors.New("the program ended during its start-up")
	case <-ctx.Done():
		_ = h.p.rdyR.SetReadDeadline(time.Now())
		return ctx.Err()
	}
}

// Foreground gives the sandbox the default CPU weight before Activate
// gives it its tenant's part: a run waits for it to be ready, so its
// start-up is no longer background work. (Which run's is not known yet:
// the one waiting may be served by another.)
func (h *HeldProcess) Foreground() error {
	if err := h.cg.weight(1); err != nil {
		return fmt.Errorf("restore CPU weight: %w", err)
	}
	return nil
}

// Activate puts the HeldProcess to use: it replaces the pool's limits
// with a's, connects the I/O, sends the control input and starts the
// deadline and the CPU budget. ctx now bounds the run: its end kills it.
// On error the run has not begun; Kill the HeldProcess.
func (h *HeldProcess) Activate(ctx context.Context, a Activation) error {
	err := errActivated
	h.activateOnce.Do(func() { err = h.activate(ctx, a) })
	return err
}

func (h *HeldProcess) activate(ctx context.Context, a Activation) error {
	h.ph.mark("held")
	// A run must never go on with the pool's generous limits.
	if h.zygote != nil {
		// The rlimits are the entering process's to set (enterConfig).
		if err := h.cg.update(a.Limits); err != nil {
			return fmt.Errorf("apply limits: %w", err)
		}
		if err := h.updateMeminfo(a.Limits); err != nil {
			return err
		}
	} else if err := h.limit(a.Limits); err != nil {
		return err
	}
	if err := h.r.shares.join(h.sandbox, a.Tenant); err != nil {
		return fmt.Errorf("set the CPU weight: %w", err)
	}
	cpu, _ := h.cg.cpu()
	h.stdout.SetSpool(a.Spool)
	h.stderr.SetSpool(a.Spool)
	h.stdout.SetLive(a.Stdout, int64(a.Limits.Output))
	h.stderr.SetLive(a.Stderr, int64(a.Limits.Output))
	if h.zygote != nil {
		h.p.ctlW.Close()
		if err := h.enter(a); err != nil {
			return err
		}
		h.feedStdin(a.Stdin)
		h.begin(runActivation(ctx, a.Limits, cpu))
		return nil
	}
	h.feedStdin(a.Stdin)
	_, err := h.p.ctlW.Write(a.Control)
	h.p.ctlW.Close()
	if err != nil {
		return fmt.Errorf("send control input: %w", err)
	}
	h.begin(runActivation(ctx, a.Limits, cpu))
	return nil
}

// enter has the zygote fork the run's process into the sandbox: it
// passes, in zygote.py's order, the run's config (a sealed memfd), init's
// pidfd (whose namespaces it enters, and which it kills at the end),
// init's status pipe, the program's stdio and the files to join the
// run's cgroup by.
func (h *HeldProcess) enter(a Activation) error {
	entry := h.takeEntry()
	defer closeFiles(entry)
	if len(entry) != 4 {
		return errors.New("the sandbox's ends were passed on already")
	}
	cfg := enterConfig{Argv: h.zygote.interp, UID: SandboxUID, GID: SandboxUID, Dir: workspace.Dir}
	for _, rl := range rlimits(a.Limits) {
		cfg.Rlimits = append(cfg.Rlimits, [2]uint64{uint64(rl.Resource), rl.Value})
	}
	if !h.r.cfg.NoSeccomp {
		cfg.Seccomp = hex.EncodeToString(h.r.filter)
	}
	ctl := json.RawMessage(a.Control)
	cfg.Control = &ctl
	b, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	cfgFile, err := sealedFile("sandboxd-run", b, false)
	if err != nil {
		return err
	}
	defer cfgFile.Close()
	pidfd, err := h.init.dup()
	if err != nil {
		return err
	}
	defer pidfd.Close()
	join, err := h.cg.openJoin()
	if err != nil {
		return err
	}
	defer closeFiles(join)
	files := append([]*os.File{cfgFile, pidfd, entry[3], entry[0], entry[1], entry[2]}, join...)
	// Lost, the run would wait for its deadline: it ends now instead,
	// with no status of the program's.
	if err := h.zygote.fork(files, h.Kill, h.done); err != nil {
		return err
	}
	h.ph.mark("zygote")
	return nil
}

// limit replaces the limits the sandbox was started with: the cgroup's
// and the program's rlimits (the program has started nothing yet, so it
// is the only process they must reach).
func (h *HeldProcess) limit(l limits.Limits) error {
	// The pid was read from cgroup.procs at start; it must still be the
	// sandbox's before prlimit acts on it (a pid of a reaped program could
	// be a host process's by now). The program is our own runner, waiting
	// on its control pipe: it has no reason to end in between.
	if h.progPid == 0 || !h.inCgroup(h.progPid) {
		return errors.New("apply limits: the held program is not in its sandbox")
	}
	return h.relimit(h.progPid, l)
}

// relimit replaces the limits a sandbox started ahead of its use was
// built with by l: the cgroup's, its /proc/meminfo, and the rlimits of
// pid, the program, which must be the only process they reach (it has
// started nothing yet). The caller has checked that pid is still the
// sandbox's. The CPU weight is not a limit: Activate or Busy sets it.
func (s *sandbox) relimit(pid int, l limits.Limits) error {
	if err := s.cg.update(l); err != nil {
		return fmt.Errorf("apply limits: %w", err)
	}
	if err := s.updateMeminfo(l); err != nil {
		return err
	}
	// As the namespace's owner, who holds CAP_SYS_RESOURCE in it (asOwner).
	return asOwner(func() error { return prlimitAll(pid, rlimits(l)) }, s.ws.dir.ids.uid)
}

// prlimitAll sets each of rls on pid.
func prlimitAll(pid int, rls []nsinit.Rlimit) error {
	for _, rl := range rls {
		lim := unix.Rlimit{Cur: rl.Value, Max: rl.Value}
		if err := unix.Prlimit(pid, rl.Resource, &lim, nil); err != nil {
			return fmt.Errorf("apply rlimit %s: %w", rl.Name, os.NewSyscallError("prlimit", err))
		}
	}
	return nil
}
