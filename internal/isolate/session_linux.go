package isolate

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sandboxd/sandboxd/internal/limits"
)

// SessionProcess runs one long-lived program (a kernel) for many
// executions. Its sandbox is built like a run's, with the session's own
// limits, applied once: the cgroup is created with them and init sets the
// program's rlimits from them. Activate starts the session's clock. From
// there:
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
// Kill. The SessionProcess ends when the program does, as a run ends.
type SessionProcess struct {
	*sandbox
	limits limits.Limits
	// progPid is the program's host pid, found at its start; Interrupt
	// and Relimit reach it through a pidfd opened for the call
	// (sandbox.pidfdIn).
	progPid int
}

// StartSession starts e as a session's program, under e.Limits for the
// session's whole life: see above. ctx bounds the start and, until
// Activate, the SessionProcess's life.
func (r *Runner) StartSession(ctx context.Context, ws *Workspace, e Exec) (*SessionProcess, error) {
	return r.startSession(ctx, ws, e, startOpts{control: true})
}

// StartSessionAhead starts e as StartSession does, for a session to come:
// at the least CPU weight (a kernel starting ahead must not slow the work
// being served) until Relimit gives it its session's limits.
func (r *Runner) StartSessionAhead(ctx context.Context, ws *Workspace, e Exec) (*SessionProcess, error) {
	return r.startSession(ctx, ws, e, startOpts{control: true, background: true})
}

func (r *Runner) startSession(ctx context.Context, ws *Workspace, e Exec, o startOpts) (*SessionProcess, error) {
	s, err := r.start(ctx, ws, e, o)
	if err != nil {
		return nil, err
	}
	pid := s.findProgram()
	if pid == 0 {
		s.Kill()
		_, _ = s.Wait()
		return nil, errors.New("the program is not in its sandbox after its start")
	}
	return &SessionProcess{sandbox: s, limits: e.Limits, progPid: pid}, nil
}

// Relimit replaces the limits the SessionProcess was started with by l,
// before Activate (which then applies l): the cgroup's, /proc/meminfo and
// the program's rlimits (its CPU weight is Busy's). The program must not
// have started anything yet (a kernel waiting for its first request). The
// sandbox's tmpfs sizes cannot change: l.Tmpfs must be the started one's.
func (sp *SessionProcess) Relimit(l limits.Limits) error {
	if l.Tmpfs != sp.limits.Tmpfs {
		return fmt.Errorf("apply limits: the tmpfs size was %s, not %s", sp.limits.Tmpfs, l.Tmpfs)
	}
	fd, err := sp.pidfdIn(sp.progPid)
	if err != nil {
		return fmt.Errorf("apply limits: %w", err)
	}
	defer unix.Close(fd)
	if err := sp.relimit(sp.progPid, l); err != nil {
		return err
	}
	sp.limits = l
	return nil
}

// Activate starts the session: its wall and CPU time count from here, and
// ctx bounds its life from now on (its end kills it). The program's stdin
// is closed (it takes its requests on fd 3), and its output has no
// overflow action until an execution sets one (SetOutput). The limits are
// the ones StartSession applied; nothing is applied again.
func (sp *SessionProcess) Activate(ctx context.Context) error {
	err := errActivated
	sp.activateOnce.Do(func() {
		cpu, _ := sp.cg.cpu()
		sp.closeStdin()
		sp.stdout.SetOver(nil)
		sp.stderr.SetOver(nil)
		// No timeout or CPU budget for the supervisor: each execution
		// has its own, enforced by the session.
		sp.begin(activation{ctx: ctx, limits: sp.limits, at: time.Now(), cpu: cpu})
		err = nil
	})
	return err
}

// Busy counts the session busy for tenant (a cell, a file write): it
// shares its tenant's CPU weight with the tenant's other busy sandboxes
// (cpushares_linux.go) until a matching Idle. A session started by
// StartSession is busy for Exec.Tenant from its start, until one Idle;
// one started ahead is not busy. Busy on an ended session is an error.
func (sp *SessionProcess) Busy(tenant string) error {
	return sp.r.shares.join(sp.sandbox, tenant)
}

// Idle undoes one Busy (or the start's); after the last, the session has
// the least CPU weight: what a cell left running between cells is
// background work, which slows no one's cell or run. Idle on a session
// not busy does nothing.
func (sp *SessionProcess) Idle() error {
	return sp.r.shares.leave(sp.sandbox)
}

// Control is the write end of the program's control pipe (its fd 3).
func (sp *SessionProcess) Control() io.Writer { return sp.p.ctlW }

// Answers is the read end of the program's answer pipe (its fd 4).
func (sp *SessionProcess) Answers() io.Reader { return sp.p.rdyR }

// SetOutput directs the program's output to stdout and stderr from now on,
// keeping up to max bytes of each for Cut and calling over once when one
// passes max. Output written since the last Cut goes to them first.
func (sp *SessionProcess) SetOutput(stdout, stderr io.Writer, max int64, over func()) {
	sp.stdout.SetOver(over)
	sp.stderr.SetOver(over)
	sp.stdout.SetLive(stdout, max)
	sp.stderr.SetLive(stderr, max)
}

// cutTimeout bounds waiting for a mark: the drains never stop reading, so
// only a program that reads its own output pipe back could hold it up.
const cutTimeout = 2 * time.Second

// Cut returns the output the program wrote before the call, every byte of
// it, and starts the next execution's output afresh. Bytes the program
// writes after the call belong to the next execution.
func (sp *SessionProcess) Cut(ctx context.Context) (Output, error) {
	var out Output
	caps := [2]struct {
		b *[]byte
		t *bool
	}{{&out.Stdout, &out.StdoutTruncated}, {&out.Stderr, &out.StderrTruncated}}
	ctx, cancel := context.WithTimeout(ctx, cutTimeout)
	defer cancel()
	var firstErr error
	for i, c := range [2]interface{ Reset() ([]byte, bool) }{sp.stdout, sp.stderr} {
		mark := make([]byte, 32)
		_, _ = rand.Read(mark)
		passed := make(chan struct{})
		sp.marks[i].Arm(mark, func() {
			*caps[i].b, *caps[i].t = c.Reset()
			close(passed)
		})
		err := sp.writeMark(i, mark, ctx)
		if err == nil {
			select {
			case <-passed:
				continue
			case <-sp.drained:
				// Only once the program is gone and the pipes closed.
			case <-ctx.Done():
				err = ctx.Err()
			}
		}
		sp.marks[i].Disarm()
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
func (sp *SessionProcess) writeMark(i int, mark []byte, ctx context.Context) error {
	w, err := reopenWriter([2]*os.File{sp.p.outR, sp.p.errR}[i])
	if err != nil {
		return err
	}
	defer w.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = w.SetWriteDeadline(dl)
	}
	_, err = w.Write(mark)
	return err
}

// reopenWriter opens a new write end of the pipe whose read end is r, for
// one mark. Linux opens a pipe named by /proc/self/fd/N as a FIFO, so the
// parent need not keep a write end of the program's output pipes between
// executions: two descriptors less per session, and the descriptors a
// daemon may hold bound how many sessions it keeps. The magic link is
// opened while r's descriptor is held (RawConn.Control): a concurrent
// Close (finish's) waits for it, so N cannot name another file meanwhile.
// Non-blocking: there is a reader (r), so the open does not wait, and the
// write honours its deadline.
func reopenWriter(r *os.File) (*os.File, error) {
	rc, err := r.SyscallConn()
	if err != nil {
		return nil, err
	}
	fd := -1
	var openErr error
	if err := rc.Control(func(rfd uintptr) {
		fd, openErr = unix.Open("/proc/self/fd/"+strconv.Itoa(int(rfd)), unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	}); err != nil {
		// r is closed: the sandbox has ended.
		return nil, errors.New("the program has ended")
	}
	if openErr != nil {
		return nil, &os.PathError{Op: "reopen", Path: "output pipe", Err: openErr}
	}
	return os.NewFile(uintptr(fd), "mark"), nil
}

// Interrupt sends sig to the program (not to init, not to the program's
// children): a kernel turns SIGINT into KeyboardInterrupt in the code it
// runs. It goes through a pidfd checked to be the sandbox's, so it can
// never reach a host process that reused the pid.
func (sp *SessionProcess) Interrupt(sig syscall.Signal) error {
	select {
	case <-sp.done:
		return errors.New("the program has ended")
	default:
	}
	fd, err := sp.pidfdIn(sp.progPid)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.PidfdSendSignal(fd, sig, nil, 0); err != nil {
		return os.NewSyscallError("pidfd_send_signal", err)
	}
	return nil
}

// CPUTime is the CPU time every process of the sandbox has used so far;
// once the SessionProcess has ended, its total.
func (sp *SessionProcess) CPUTime() (time.Duration, error) {
	select {
	case <-sp.done:
		return sp.finalCPU, nil
	default:
	}
	return sp.cg.cpu()
}
