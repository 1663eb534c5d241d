package isolate

import (
	"context"
	"syscall"
	"time"

	"github.com/sandboxd/sandboxd/internal/isolate/nsinit"
	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
)

// activation is what the supervisor is told when a sandbox is put to use.
type activation struct {
	// ctx bounds the sandbox from now on: its end kills it.
	ctx context.Context
	// limits are the ones the result is classified against.
	limits limits.Limits
	// at is when the wall time starts; cpu the CPU time used before it
	// (the start-up), which the result does not count.
	at  time.Time
	cpu time.Duration
	// timeout and cpuBudget are enforced by the supervisor; zero for a
	// session, whose executions the session times itself.
	timeout, cpuBudget time.Duration
}

// runActivation is a run's activation (one-shot or held): its deadline and
// CPU budget are the supervisor's to enforce.
func runActivation(ctx context.Context, l limits.Limits, cpu time.Duration) activation {
	return activation{ctx: ctx, limits: l, at: time.Now(), cpu: cpu, timeout: l.Timeout.Std(), cpuBudget: l.CPUTime.Std()}
}

// begin hands the supervisor its activation.
func (s *sandbox) begin(a activation) {
	s.ph.mark("activate")
	s.activated <- a
}

// supervise enforces the limits once the sandbox is activated (the wall
// deadline, the CPU budget, the output caps, cancellation) and, when init
// exits, collects the result. Until activation, ctx bounds the sandbox.
func (s *sandbox) supervise(ctx context.Context, startLimits limits.Limits) {
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
		s.kill()
	}
	begin := func(a activation) {
		act, active = a, true
		done = act.ctx.Done()
		if act.timeout > 0 {
			t := time.NewTimer(act.timeout)
			stops = append(stops, func() { t.Stop() })
			deadline = t.C
		}
		if act.cpuBudget > 0 {
			poll := min(max(act.cpuBudget/20, 10*time.Millisecond), 100*time.Millisecond)
			tick := time.NewTicker(poll)
			stops = append(stops, tick.Stop)
			cpuTick = tick.C
		}
	}
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()
loop:
	for {
		select {
		case <-s.exited:
			if !active {
				// A program that exits at once can beat its activation
				// to this select.
				select {
				case act = <-s.activated:
					active = true
				default:
				}
			}
			break loop
		case a := <-s.activated:
			begin(a)
		case <-done:
			if !active {
				select {
				case a := <-s.activated:
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
			if used, err := s.cg.cpu(); err == nil && used-act.cpu >= act.cpuBudget {
				kill(killCPU)
			}
		case <-s.overflow:
			kill(killOutput)
		}
	}
	if !active {
		act = activation{ctx: ctx, limits: startLimits, at: time.Now()}
	}
	s.res, s.err = s.finish(act, reason)
	close(s.done)
}

// finish runs after init exited: every process of the run is gone (init's
// death took them), so the pipes are at EOF or about to be; the wait is
// bounded all the same. Then the figures, the cgroup's removal, the status.
func (s *sandbox) finish(act activation, reason killReason) (*run.Result, error) {
	r := s.r
	res := &run.Result{ID: s.ws.id, ExitCode: -1, Isolation: r.isolation()}
	res.Isolation.Init = s.initKind
	res.WallTime = time.Since(act.at)
	s.ph.mark("program")
	defer s.p.closeAll()
	// Ends never passed on (the sandbox ended while held) would keep
	// the drains from their EOF.
	closeFiles(s.takeEntry())
	s.closeStdin()
	select {
	case <-s.drained:
	case <-time.After(drainGrace):
		r.log.Error("output not drained after the run ended; killing the cgroup", "run", s.ws.id)
		_ = s.cg.kill()
		_ = s.p.outR.SetReadDeadline(time.Now())
		_ = s.p.errR.SetReadDeadline(time.Now())
		<-s.drained
	}
	s.ph.mark("drain")
	res.Stdout, res.StdoutTruncated = s.stdout.Result()
	res.Stderr, res.StderrTruncated = s.stderr.Result()
	res.StdoutFile, res.StderrFile = s.stdout.File(), s.stderr.File()
	var setupErr *nsinit.Message
	var exit *nsinit.ExitStatus
	for m := range s.msgs {
		switch {
		case m.Error != "":
			setupErr = &m
		case m.Exit != nil:
			exit = m.Exit
		}
	}
	if s.enter && reason != killNone && exit != nil && exit.Signal == int(syscall.SIGKILL) {
		// The fork server reports the SIGKILL that the
		// supervisor's kill of init dealt the run's process; a killed
		// reaper reports nothing. As for a run init started, the result
		// then holds no status of the program's.
		exit = nil
	}
	st, err := s.cg.stats()
	if err != nil {
		r.log.Warn("read run cgroup stats", "run", s.ws.id, "err", err)
	}
	res.CPUTime, res.PeakMemory, res.OOMKills = st.CPU-act.cpu, st.PeakMemory, st.OOMKills
	s.finalCPU = st.CPU
	s.ph.mark("stats")
	s.destroyCgroup()
	s.removeProcFiles()
	r.log.Debug("run phases", "run", s.name, "phases", s.ph.String())
	if setupErr != nil {
		err := s.setupError(setupErr)
		res.Close()
		return failed(res.Isolation, s.ws.id, err), err
	}
	classify(res, reason, exit, Exec{Limits: act.limits}, context.Cause(act.ctx))
	return res, nil
}
