package isolate

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A session Process runs one long-lived program (a kernel) for many
// executions. It is built like any run's sandbox and held; Activate then
// applies the session's limits once. From there:
//
//	parent                                 program
//	Control() ── request ──────────────▶  fd 3   (stays open)
//	SetOutput(cell's writers)              runs the request, writes fd 1, 2
//	Answers() ◀─────────────── answer ──  fd 4
//	Cut() ── mark ─▶ stdout/stderr pipes   (FIFO: the mark comes after every
//	                 Copy meets the mark     byte written before the answer)
//	       ◀── the execution's output
//
// The session enforces each execution's deadline itself: Interrupt, then
// Kill. The Process ends when the program does, as a run ends.

// StartSession starts e held, as a session's program: see above. ctx bounds
// the start and, until Activate, the Process's life.
func (r *Runner) StartSession(ctx context.Context, ws *Workspace, e Exec) (*Process, error) {
	if len(e.Argv) == 0 {
		return nil, errors.New("empty argv")
	}
	return r.newProcess(ctx, ws, e, true, true)
}

// Control is the write end of the program's control pipe (its fd 3).
func (p *Process) Control() io.Writer { return p.p.ctlW }

// Answers is the read end of the program's answer pipe (its fd 4).
func (p *Process) Answers() io.Reader { return p.p.rdyR }

// SetOutput directs the program's output to stdout and stderr from now on,
// keeping up to max bytes of each for Cut and calling over once when one
// passes max. Output written since the last Cut goes to them first.
func (p *Process) SetOutput(stdout, stderr io.Writer, max int64, over func()) {
	p.stdout.SetOver(over)
	p.stderr.SetOver(over)
	p.stdout.SetLive(stdout, max)
	p.stderr.SetLive(stderr, max)
}

// cutTimeout bounds waiting for a mark: the drains never stop reading, so
// only a program that reads its own output pipe back could hold it up.
const cutTimeout = 2 * time.Second

// Cut returns the output the program wrote before the call, every byte of
// it, and starts the next execution's output afresh. Bytes the program
// writes after the call belong to the next execution.
func (p *Process) Cut(ctx context.Context) (Output, error) {
	if !p.session {
		return Output{}, ErrNotSession
	}
	var out Output
	caps := [2]struct {
		b *[]byte
		t *bool
	}{{&out.Stdout, &out.StdoutTruncated}, {&out.Stderr, &out.StderrTruncated}}
	ctx, cancel := context.WithTimeout(ctx, cutTimeout)
	defer cancel()
	var firstErr error
	for i, c := range [2]interface{ Reset() ([]byte, bool) }{p.stdout, p.stderr} {
		mark := make([]byte, 32)
		_, _ = rand.Read(mark)
		passed := make(chan struct{})
		p.marks[i].Arm(mark, func() {
			*caps[i].b, *caps[i].t = c.Reset()
			close(passed)
		})
		err := p.writeMark(i, mark, ctx)
		if err == nil {
			select {
			case <-passed:
				continue
			case <-p.drained:
				// Only once the program is gone and the pipes closed.
			case <-ctx.Done():
				err = ctx.Err()
			}
		}
		p.marks[i].Disarm()
		select {
		case <-passed:
			continue
		default:
		}
		*caps[i].b, *caps[i].t = c.Reset()
		if firstErr == nil {
			firstErr = fmt.Errorf("cut the program's output: %w", err)
		}
	}
	return out, firstErr
}

// writeMark writes mark into output pipe i (0 stdout, 1 stderr). A mark is
// under PIPE_BUF, so it is written whole, never interleaved.
func (p *Process) writeMark(i int, mark []byte, ctx context.Context) error {
	p.sessMu.Lock()
	// Not held during the Write: os.File allows a Close (finish's)
	// concurrent with it.
	w := p.syncW[i]
	p.sessMu.Unlock()
	if w == nil {
		return errors.New("the program has ended")
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = w.SetWriteDeadline(dl)
	}
	_, err := w.Write(mark)
	return err
}

// Interrupt sends sig to the program (not to init, not to the program's
// children): a kernel turns SIGINT into KeyboardInterrupt in the code it
// runs. It goes through a pidfd, so it can never reach a reused pid.
func (p *Process) Interrupt(sig syscall.Signal) error {
	p.sessMu.Lock()
	defer p.sessMu.Unlock()
	if !p.session {
		return ErrNotSession
	}
	if p.progFD < 0 {
		return errors.New("the program has ended")
	}
	if err := unix.PidfdSendSignal(p.progFD, sig, nil, 0); err != nil {
		return os.NewSyscallError("pidfd_send_signal", err)
	}
	return nil
}

// CPUTime is the CPU time every process of the sandbox has used so far;
// once the Process has ended, its total.
func (p *Process) CPUTime() (time.Duration, error) {
	select {
	case <-p.done:
		return p.finalCPU, nil
	default:
	}
	return p.cg.cpu()
}

// closeSession closes what only a session Process holds: the mark writers
// (so the drains can reach EOF) and the pidfd.
func (p *Process) closeSession() {
	p.sessMu.Lock()
	defer p.sessMu.Unlock()
	for i, f := range p.syncW {
		if f != nil {
			f.Close()
			p.syncW[i] = nil
		}
	}
	if p.progFD >= 0 {
		unix.Close(p.progFD)
		p.progFD = -1
	}
}
