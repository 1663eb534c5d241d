package wasm

import (
	"context"
	"io"
	"time"

	"github.com/tetratelabs/wazero"
)

// execution is one run handed to an executor.
type execution struct {
	mod            *moduleEntry
	job            *guestJob
	stdin          io.Reader
	stdout, stderr *capture
	timeout, cpu   time.Duration
}

// executor runs guests: in this process (inProcess) or in worker processes
// (workerPool). execute returns how the guest ended, the limit it acted on
// (nil if none: errTimeout, errCPU, errOutput, or the caller's context
// error), and the wall and CPU time of the guest.
type executor interface {
	execute(ctx context.Context, ex *execution) (end guestEnd, cause error, wall time.Duration, err error)
	// warm prepares to run the modules at paths without delay.
	warm(ctx context.Context, paths []string) error
	close(ctx context.Context) error
}

// inProcess runs guests on goroutines of this process, under a runtime
// made WithCloseOnContextDone: at the deadline wazero closes the module and
// the guest stops at its next loop header.
type inProcess struct {
	rt wazero.Runtime
}

func (x *inProcess) close(context.Context) error { return nil }

// warm has nothing to do: the runner compiled the modules.
func (x *inProcess) warm(context.Context, []string) error { return nil }

func (x *inProcess) execute(ctx context.Context, ex *execution) (guestEnd, error, time.Duration, error) {
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	runCtx, stop := context.WithTimeoutCause(runCtx, ex.timeout, errTimeout)
	defer stop()
	over := func() { cancel(errOutput) }
	ex.stdout.SetOver(over)
	ex.stderr.SetOver(over)
	stdin, closeStdin := guestStdin(runCtx, ex.stdin)
	defer closeStdin()

	type outcome struct {
		end   guestEnd
		cause error
	}
	done := make(chan outcome, 1)
	clocks := make(chan func() time.Duration, 1)
	start := time.Now()
	go func() {
		end := runGuest(runCtx, x.rt, ex.mod.compiled, ex.job, guestIO{stdin, ex.stdout, ex.stderr},
			guestHooks{started: func(cpu func() time.Duration) { clocks <- cpu }})
		var cause error
		if runCtx.Err() != nil {
			// The guest returned after the context ended: whatever ended
			// it stopped the guest (or would have, a moment later).
			cause = context.Cause(runCtx)
		}
		done <- outcome{end, cause}
	}()
	cpuUsed := <-clocks
	// The guest runs one thread: its CPU time never exceeds its wall time,
	// so a budget at or above the timeout needs no watching.
	var tick <-chan time.Time
	if ex.cpu > 0 && ex.cpu < ex.timeout {
		t := time.NewTicker(cpuPoll(ex.cpu))
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case o := <-done:
			return o.end, o.cause, time.Since(start), nil
		case <-tick:
			if cpuUsed() >= ex.cpu {
				cancel(errCPU)
			}
		}
	}
}

// cpuPoll is how often a CPU budget is checked: a twentieth of it, between
// 10 and 100 ms, as the process backend does.
func cpuPoll(budget time.Duration) time.Duration {
	return min(max(budget/20, 10*time.Millisecond), 100*time.Millisecond)
}
