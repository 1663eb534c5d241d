package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sandboxd/sandboxd/internal/admission"
	"github.com/sandboxd/sandboxd/internal/isolate"
	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
)

// interruptGrace is how long a cell has to stop after its interrupt
// before the kernel is killed.
const interruptGrace = 2 * time.Second

// startTimeout bounds a kernel's start-up, from its sandbox to "ready".
const startTimeout = 30 * time.Second

// Session is one live kernel in its sandbox. Its methods are safe for
// concurrent use; cells run one at a time, in the order they acquire it.
type Session struct {
	id, owner string
	// tenant is whom the kernel's CPU is counted to while it works (its
	// creator's admission.Tenant): its start, cells and file writes share
	// that tenant's CPU weight (isolate.SessionProcess.Busy).
	tenant  string
	runtime string
	version string
	limits  limits.Limits
	// maxTimeout is the longest timeout a cell may ask for (the ceiling).
	maxTimeout time.Duration
	idle       time.Duration
	// cpuBudget is the CPU time the session may use in its whole life,
	// counted from cpuStart, its cgroup's CPU time once it was ready
	// (the kernel's start-up is the daemon's, not the session's).
	cpuBudget, cpuStart time.Duration
	// cpuSeen is the most CPU time read (from cpuStart): CPU time only
	// grows, so a lower or failed reading (the kernel's cgroup removed
	// as it died, before its total was kept) gives this instead.
	cpuSeen atomic.Int64
	created time.Time
	now     func() time.Time
	log     *slog.Logger
	// gate admits the cells (see Config.Gate); nil admits every one.
	gate *admission.Gate

	ws *isolate.Workspace
	// ahead says the kernel was started ahead of the session (ready.go).
	ahead bool
	// freeOnce frees the workspace once: when the kernel dies (watch) or
	// the session is closed, whichever is first.
	freeOnce sync.Once
	freeErr  error

	proc    *isolate.SessionProcess
	answers chan answer
	ansErr  *error // set by readAnswers before it closes answers
	cancel  context.CancelFunc
	// unreserve gives the session's memory back to the daemon's budget:
	// at the kernel's death or at close, whichever comes first (nil
	// without a budget; it runs once however often it is called).
	unreserve func()

	// turn is held by the running cell.
	turn chan struct{}
	// queue counts the cells waiting for the turn and the code they hold.
	queue queue

	mu     sync.Mutex
	state  run.SessionState
	reason string
	// spent says the CPU budget was used up and the kernel killed for it
	// (the death's reason), or is empty.
	spent    string
	cells    int
	lastUsed time.Time
	closed   bool
}

// start builds the sandbox, starts the kernel and waits for it to be
// ready. ctx bounds the start; life bounds the session.
func start(ctx, life context.Context, r *isolate.Runner, k kernel, s *Session, env []string, files, internal []run.File) (err error) {
	ws, err := r.NewWorkspace(s.limits.Tmpfs)
	if err != nil {
		return err
	}
	s.ws = ws
	defer func() {
		if err != nil {
			if cerr := ws.Close(); cerr != nil {
				err = errors.Join(err, cerr)
			}
		}
	}()
	for _, f := range internal {
		if err := ws.WriteInternal(f); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	p, err := r.StartSession(ctx, ws, isolate.Exec{Argv: k.argv, Env: env, Limits: kernelLimits(s.limits, s.cpuBudget), Tenant: s.tenant})
	if err != nil {
		return err
	}
	life, s.cancel = context.WithCancel(life)
	if err := p.Activate(life); err != nil {
		s.cancel()
		p.Kill()
		_, _ = p.Wait()
		return err
	}
	s.proc = p
	// Unbuffered but for one: a kernel flooding answers between cells
	// blocks on its pipe instead of filling the daemon's memory.
	s.answers, s.ansErr = make(chan answer, 1), new(error)
	go readAnswers(p.Answers(), s.answers, s.ansErr)
	if s.version, err = awaitReady(ctx, s.answers); err != nil {
		s.kill()
		res, _ := p.Wait()
		return fmt.Errorf("start the %s kernel: %w%s", s.runtime, err, stderrTail(res))
	}
	return s.begin(ctx, files)
}

// awaitReady waits for a kernel's first answer, "ready", and returns the
// version it gives.
func awaitReady(ctx context.Context, answers <-chan answer) (string, error) {
	select {
	case a, ok := <-answers:
		switch {
		case ok && a.Type == "ready":
			return a.Version, nil
		case ok:
			return "", fmt.Errorf("%w: %s before ready", errProtocol, run.Quote(a.Type, run.MaxName))
		}
		return "", errors.New("the kernel ended during its start-up")
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// begin puts a ready kernel to use: the spec's files placed, the CPU
// budget counted from now, the kernel watched. The kernel is busy (its
// start's, or adopt's) until then, and idle after. On error the kernel is
// killed.
func (s *Session) begin(ctx context.Context, files []run.File) error {
	if err := placeFiles(ctx, s.proc, files); err != nil {
		s.kill()
		_, _ = s.proc.Wait()
		return err
	}
	s.goIdle()
	s.cpuStart, _ = s.proc.CPUTime()
	go s.watch()
	return nil
}

// kernelLimits are the limits the kernel's sandbox is built with: the
// session's, but for the CPU time, which is the session's budget. The
// per-process RLIMIT_CPU is made from it (a backstop past the budget), and
// a kernel's process lives the session's life: a cell's budget there would
// kill the kernel after a few heavy cells, however far apart. A cell's own
// budget is enforced from the cgroup by Exec.
func kernelLimits(l limits.Limits, budget time.Duration) limits.Limits {
	l.CPUTime = limits.Duration(budget)
	return l
}

// placeFiles writes the spec's files into the workspace of a kernel that
// is ready: from inside its cgroup, so they are charged to the session as
// its uploads are (isolate.SessionProcess.WriteFiles). The kernel reads
// none of them before its first cell.
func placeFiles(ctx context.Context, p *isolate.SessionProcess, files []run.File) error {
	err := p.WriteFiles(ctx, files)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("place the input files: %w", ctx.Err())
	}
	return fmt.Errorf("%w: %w", ErrInvalid, err)
}

// stderrTail is the end of a failed start-up's stderr, for its error.
func stderrTail(res *run.Result) string {
	if res == nil || len(res.Stderr) == 0 {
		return ""
	}
	b := res.Stderr
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return ": " + string(b)
}

// watch enforces the session's CPU budget while the kernel lives, marks
// the session dead when its kernel ends between cells (a background
// thread's allocation can hit the memory limit while idle), and frees its
// workspace as soon as the kernel is gone, whenever that is.
func (s *Session) watch() {
	s.enforceBudget()
	res, _ := s.proc.Wait()
	s.mu.Lock()
	// A death during a cell is the cell's to explain (a limit it hit, a
	// kill that followed): Exec sets the reason then.
	if s.state == run.SessionIdle {
		s.state, s.reason = run.SessionDead, run.Clip(s.deathReason(res), run.MaxMessage)
	}
	s.mu.Unlock()
	if err := s.free(); err != nil {
		s.log.Error("free a dead session's workspace", "session", s.id, "run", s.ws.ID(), "err", err)
	}
	// Only now is the memory free to promise again.
	s.releaseMemory()
}

// free removes the workspace (its tmpfs and the run directory) once. A
// dead kernel's workspace would otherwise stay in memory until the
// session is deleted or expires: its cgroup is gone with the kernel, so
// its pages count against no limit and no OOM kill can reclaim them.
// Requests that come after get ErrDead (see files.go).
func (s *Session) free() error {
	s.freeOnce.Do(func() { s.freeErr = s.ws.Close() })
	return s.freeErr
}

// enforceBudget polls the session's CPU time until the kernel ends, and
// kills the kernel once the session's CPU budget is used up. It runs
// between cells as during them: the cgroup counts every process of the
// session, so a background process that spins after its cell ended is
// caught as the cell would have been.
func (s *Session) enforceBudget() {
	t := time.NewTicker(budgetPoll(s.cpuBudget))
	defer t.Stop()
	for {
		select {
		case <-s.proc.Done():
			return
		case <-t.C:
			if used, err := s.cpuUsed(); err == nil && used >= s.cpuBudget {
				s.spend(used)
			}
		}
	}
}

// budgetPoll is how often the session's CPU time is read: a fiftieth of
// the budget, from 50ms to 500ms. The budget is passed by at most the
// interval times the session's CPUs.
func budgetPoll(budget time.Duration) time.Duration {
	return min(max(budget/50, 50*time.Millisecond), 500*time.Millisecond)
}

// cpuUsed is the CPU time the session has used since it was ready.
func (s *Session) cpuUsed() (time.Duration, error) {
	cpu, err := s.proc.CPUTime()
	if err != nil {
		return time.Duration(s.cpuSeen.Load()), err
	}
	used := int64(max(cpu-s.cpuStart, 0))
	for {
		seen := s.cpuSeen.Load()
		if used <= seen {
			return time.Duration(seen), nil
		}
		if s.cpuSeen.CompareAndSwap(seen, used) {
			return time.Duration(used), nil
		}
	}
}

// spend ends a session whose CPU budget is used up: the reason first, so
// that whoever sees the kernel's death (a running cell, watch) gives it,
// and an idle session is dead at once (the next request gets ErrDead with
// it, not a cell sent to a kernel being killed).
func (s *Session) spend(used time.Duration) {
	s.mu.Lock()
	if s.spent == "" {
		s.spent = fmt.Sprintf("the session's CPU budget of %s was used up (%s used, background processes included) and the kernel was killed",
			limits.Duration(s.cpuBudget), used.Round(time.Millisecond))
		if s.state == run.SessionIdle {
			s.state, s.reason = run.SessionDead, s.spent
		}
	}
	s.mu.Unlock()
	s.kill()
}

// spentReason is the reason of a death by the CPU budget, or "".
func (s *Session) spentReason() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.spent
}

// deathReason says why a kernel ended.
func (s *Session) deathReason(res *run.Result) string {
	if res == nil {
		return "the kernel ended"
	}
	switch res.Status {
	case run.StatusMemoryLimit:
		return fmt.Sprintf("the session's memory limit of %s was reached and the kernel was killed", s.limits.Memory)
	case run.StatusCPULimit:
		// RLIMIT_CPU's backstop, past the budget (kernelLimits).
		return fmt.Sprintf("the session's CPU budget of %s was used up and the kernel was killed", limits.Duration(s.cpuBudget))
	case run.StatusExited, run.StatusOK:
		return fmt.Sprintf("the kernel exited with code %d", res.ExitCode)
	case run.StatusSignaled:
		return "the kernel was killed by " + res.SignalName
	}
	if res.Reason != "" {
		return res.Reason
	}
	return "the kernel ended: " + string(res.Status)
}

// ID is the session's id.
func (s *Session) ID() string { return s.id }

// Ahead reports whether the session's kernel was started ahead of it.
func (s *Session) Ahead() bool { return s.ahead }

// RunID is the id of the session's sandbox: its run directory and the
// prefix of its cgroups' names, for logs.
func (s *Session) RunID() string { return s.ws.ID() }

// Info describes the session.
func (s *Session) Info() run.SessionInfo {
	used, _ := s.cpuUsed()
	s.mu.Lock()
	defer s.mu.Unlock()
	return run.SessionInfo{
		ID: s.id, Runtime: s.runtime, Version: s.version, State: s.state, Reason: s.reason,
		Cells: s.cells, Created: s.created, LastUsed: s.lastUsed, ExpiresAt: s.lastUsed.Add(s.idle),
		IdleTimeout: limits.Duration(s.idle), CPUBudget: limits.Duration(s.cpuBudget), CPUUsed: limits.Duration(used.Round(time.Millisecond)),
		Limits: s.limits,
	}
}

// Touch records a use of the session (its idle clock restarts).
func (s *Session) Touch() {
	s.mu.Lock()
	s.lastUsed = s.now()
	s.mu.Unlock()
}

// expired reports whether the session has been idle past its timeout.
func (s *Session) expired(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	// A cell holding the turn may be waiting for a slot, the session
	// still idle: it is in use all the same.
	return s.state != run.SessionBusy && len(s.turn) == 0 && now.Sub(s.lastUsed) >= s.idle
}

// Exec runs one cell and returns what it did. It waits for an earlier
// cell to finish first. A cell past its deadline or CPU budget, or whose
// output passes its cap, is interrupted; a kernel that does not stop is
// killed and the session is dead (run.SessionState in the result). The error is
// ErrDead for a dead session, ErrCellQueueFull or admission.ErrQueueFull
// when it may not wait, ctx's error when ctx ended before the cell
// started, or a failure of the session itself.
//
// A cell waits twice: for its session's turn (queue), then, holding the
// turn, for a slot of the daemon's gate. In that order, one session's
// waiting cells take one place in the gate's queue, never all of them.
func (s *Session) Exec(ctx context.Context, req run.CellRequest, live run.CellStream) (*run.CellResult, error) {
	if err := s.checkTimeout(req.Timeout); err != nil {
		return nil, err
	}
	select {
	case s.turn <- struct{}{}:
	default:
		if err := s.queue.join(len(req.Code)); err != nil {
			return nil, fmt.Errorf("%w in session %s", err, s.id)
		}
		select {
		case s.turn <- struct{}{}:
			s.queue.leave(len(req.Code))
		case <-ctx.Done():
			s.queue.leave(len(req.Code))
			return nil, ctx.Err()
		}
	}
	defer func() { <-s.turn }()
	// A dead session says so at once, not after a wait for a slot.
	if err := s.alive(); err != nil {
		return nil, err
	}
	release, err := s.admit(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	s.mu.Lock()
	if err := s.deadLocked(); err != nil {
		s.mu.Unlock()
		return nil, err
	}
	s.cells++
	cell := s.cells
	s.state = run.SessionBusy
	s.mu.Unlock()
	idle := s.busy()
	res := s.exec(ctx, cell, req, live)
	idle()
	s.mu.Lock()
	s.lastUsed = s.now()
	if res.State == run.SessionDead {
		if !s.closed {
			s.state, s.reason = run.SessionDead, res.Reason
		}
	} else {
		s.state = run.SessionIdle
	}
	res.State = s.state
	s.mu.Unlock()
	return res, nil
}

// busy counts the kernel busy for its tenant (a cell, a file write) and
// returns what ends it. A kernel that has died cannot be busy: what was
// to run in it finds that out itself.
func (s *Session) busy() (idle func()) {
	if err := s.proc.Busy(s.tenant); err != nil {
		return func() {}
	}
	return s.goIdle
}

// goIdle undoes one busy, or the start's: after the last the kernel is at
// the least CPU weight.
func (s *Session) goIdle() {
	if err := s.proc.Idle(); err != nil {
		s.log.Warn("lower an idle session's CPU weight", "session", s.id, "err", err)
	}
}

// alive is ErrDead, with the reason, for a dead or closed session.
func (s *Session) alive() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deadLocked()
}

// deadLocked is alive with s.mu held.
func (s *Session) deadLocked() error {
	if s.state == run.SessionDead || s.closed {
		return fmt.Errorf("%w: %s", ErrDead, s.reason)
	}
	return nil
}

// admit waits for a slot of the gate, if there is one, and returns its
// release. Past the gate's queue it fails at once, naming it.
func (s *Session) admit(ctx context.Context) (func(), error) {
	if s.gate == nil {
		return func() {}, nil
	}
	release, err := s.gate.Acquire(ctx)
	var share *admission.QueueShareError
	if errors.As(err, &share) {
		// Its message says it all: the client's share, not the queue.
		return nil, err
	}
	if errors.Is(err, admission.ErrQueueFull) {
		return nil, fmt.Errorf("%w: all %d of the daemon's slots for cells are taken and as many cells wait as its queue holds; send the cell again later",
			err, s.gate.Capacity())
	}
	return release, err
}

// The cells waiting for a session's running one are bounded in number
// and in the code they hold: a notebook's "run all" queues every cell at
// once, so the count is generous, but each waiting request holds its
// body in the daemon, so their bytes are not.
const (
	MaxWaitingCells     = 64
	MaxWaitingCodeBytes = 16 << 20
)

// queue counts a session's waiting cells, and the requests for cells that
// are still being read and decoded while a cell runs (expected): those
// will wait too, and their bodies are already in the daemon.
type queue struct {
	mu    sync.Mutex
	cells int
	bytes int64
	// expected and expectedBytes are the requests Expect let in, until
	// they join or give up.
	expected      int
	expectedBytes int64
}

// join counts in a cell holding n bytes of code, or says which bound it
// would pass. A cell larger than the whole byte bound is still let in
// alone: the request size limit, not this, is what refuses it.
func (q *queue) join(n int) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if err := q.checkLocked(int64(n)); err != nil {
		return err
	}
	q.cells++
	q.bytes += int64(n)
	return nil
}

// checkLocked is join's rule for a cell of n bytes, the expected requests
// counted as waiting; q.mu is held.
func (q *queue) checkLocked(n int64) error {
	cells, bytes := q.cells+q.expected, q.bytes+q.expectedBytes
	switch {
	case cells >= MaxWaitingCells:
		return fmt.Errorf("%w: a cell is running and %d more are waiting or being received; send the next when one ends", ErrCellQueueFull, cells)
	case cells > 0 && bytes+n > MaxWaitingCodeBytes:
		return fmt.Errorf("%w: a cell is running and the %d waiting or being received hold %d bytes, and this one's %d would pass the bound of %d; send it when one ends",
			ErrCellQueueFull, cells, bytes, n, MaxWaitingCodeBytes)
	}
	return nil
}

// expect counts in a request of n bytes that is about to be read, or says
// which bound it would pass; done takes it out again.
func (q *queue) expect(n int64) (done func(), err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if err := q.checkLocked(n); err != nil {
		return nil, err
	}
	q.expected++
	q.expectedBytes += n
	var once sync.Once
	return func() {
		once.Do(func() {
			q.mu.Lock()
			q.expected--
			q.expectedBytes -= n
			q.mu.Unlock()
		})
	}, nil
}

func (q *queue) leave(n int) {
	q.mu.Lock()
	q.cells--
	q.bytes -= int64(n)
	q.mu.Unlock()
}

// Expect is asked before a cell's request body of n bytes is read (n < 0:
// unknown). While a cell runs, the new one will wait, so it is checked
// against the queue's bounds (n, the whole request, standing for the code
// it holds) and counted as waiting until done is called, which the
// caller does before Exec: a burst of large cells past the queue is then
// refused unread, each body that is let in counting against the next,
// instead of read and decoded to be refused. An idle session may take
// the cell at once, so nothing is counted; Exec checks again in any case,
// by the code's length.
func (s *Session) Expect(n int64) (done func(), err error) {
	if len(s.turn) == 0 {
		return func() {}, nil
	}
	if done, err = s.queue.expect(max(n, 0)); err != nil {
		return nil, fmt.Errorf("%w in session %s", err, s.id)
	}
	return done, nil
}

// waiting is how many cells wait.
func (q *queue) waiting() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.cells
}

// Interrupt interrupts the running cell, as Ctrl-C in a notebook does:
// the kernel raises KeyboardInterrupt in it, the cell ends with status
// error, and the session goes on. It reports whether a cell was running.
// A cell that ignores it runs on, to its deadline.
func (s *Session) Interrupt() (bool, error) {
	s.mu.Lock()
	busy := s.state == run.SessionBusy
	s.mu.Unlock()
	if !busy {
		return false, nil
	}
	if err := s.proc.Interrupt(syscall.SIGINT); err != nil {
		return false, fmt.Errorf("%w: %w", ErrDead, err)
	}
	return true, nil
}

// checkTimeout checks a cell's timeout: 0 (the session's), or from 1ms
// to the server's ceiling.
func (s *Session) checkTimeout(d limits.Duration) error {
	if d == 0 {
		return nil
	}
	if d < limits.Duration(time.Millisecond) || (s.maxTimeout > 0 && d.Std() > s.maxTimeout) {
		max := "the server's ceiling"
		if s.maxTimeout > 0 {
			max = limits.Duration(s.maxTimeout).String()
		}
		return fmt.Errorf("%w: timeout %s: must be between 1ms and %s", ErrInvalid, d, max)
	}
	return nil
}

// stop is why a cell is being stopped.
type stop struct {
	status run.Status
	reason string
}

func (s *Session) exec(ctx context.Context, cell int, req run.CellRequest, live run.CellStream) *run.CellResult {
	res := &run.CellResult{Session: s.id, Cell: cell, State: run.SessionIdle}
	timeout := s.limits.Timeout.Std()
	if req.Timeout > 0 {
		timeout = req.Timeout.Std()
	}
	cpu0, _ := s.proc.CPUTime()
	start := time.Now()
	overflow := make(chan struct{}, 1)
	s.proc.SetOutput(live.Stdout, live.Stderr, int64(s.limits.Output), func() {
		select {
		case overflow <- struct{}{}:
		default:
		}
	})
	id := fmt.Sprint(cell)
	line, _ := json.Marshal(request{ID: id, Code: req.Code})
	if err := s.send(append(line, '\n'), timeout); err != nil {
		return s.died(ctx, res, start, cpu0, &stop{run.StatusInternalError, "sending the cell to the kernel failed: " + err.Error()})
	}

	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	cpuTick := time.NewTicker(min(max(s.limits.CPUTime.Std()/20, 10*time.Millisecond), 100*time.Millisecond))
	defer cpuTick.Stop()
	var (
		displayed int
		stopping  *stop
		grace     <-chan time.Time
		resend    <-chan time.Time
		stopSend  = func() {}
		done      = ctx.Done()
	)
	defer func() { stopSend() }()
	interrupt := func(why stop) {
		if stopping != nil {
			return
		}
		stopping = &why
		_ = s.proc.Interrupt(syscall.SIGINT)
		grace = time.After(interruptGrace)
		// Again until the cell stops: a kernel that had not yet taken up
		// the cell (a loaded host) ignored the first, as it does between
		// cells. None is sent once the answer is in.
		t := time.NewTicker(interruptGrace / 8)
		resend, stopSend = t.C, t.Stop
	}
	for {
		select {
		case a, ok := <-s.answers:
			if !ok {
				// Without a limit being enforced or a broken protocol, the
				// kernel's own end says why.
				why := stopping
				if err := *s.ansErr; err != nil {
					why = &stop{run.StatusInternalError, "the kernel broke its protocol: " + err.Error()}
					s.kill()
				}
				// A kernel that closed its answers is ending (the memory
				// limit, an os._exit): let its end say why, then kill it.
				select {
				case <-s.proc.Done():
				case <-time.After(interruptGrace):
				}
				return s.died(ctx, res, start, cpu0, why)
			}
			switch {
			case a.Type == "display" && a.ID == id:
				if displayed += bundleSize(a.Data); displayed > maxDisplay {
					interrupt(stop{run.StatusOutputLimit, fmt.Sprintf("the cell displayed more than %s and was interrupted", limits.Bytes(maxDisplay))})
					continue
				}
				res.Display = append(res.Display, a.Data)
				if live.Display != nil {
					live.Display(a.Data)
				}
			case a.Type == "done" && a.ID == id:
				s.finish(ctx, res, a, stopping, start, cpu0)
				return res
			}
			// Anything else is stale or forged by the cell; ignored.
		case <-deadline.C:
			interrupt(stop{run.StatusTimeout, fmt.Sprintf("the cell's timeout of %s was reached and it was interrupted", limits.Duration(timeout))})
		case <-cpuTick.C:
			if used, err := s.proc.CPUTime(); err == nil && used-cpu0 >= s.limits.CPUTime.Std() {
				interrupt(stop{run.StatusCPULimit, fmt.Sprintf("the cell's CPU time limit of %s was reached and it was interrupted", s.limits.CPUTime)})
			}
		case <-overflow:
			interrupt(stop{run.StatusOutputLimit, fmt.Sprintf("the cell's output passed the limit of %s per stream and it was interrupted", s.limits.Output)})
		case <-done:
			done = nil
			interrupt(stop{run.StatusCanceled, "the client went away and the cell was interrupted"})
		case <-resend:
			_ = s.proc.Interrupt(syscall.SIGINT)
		case <-grace:
			why := *stopping
			why.reason = fmt.Sprintf("%s; it did not stop within %s of the interrupt, so the kernel was killed", why.reason, interruptGrace)
			s.kill()
			return s.died(ctx, res, start, cpu0, &why)
		case <-s.proc.Done():
			return s.died(ctx, res, start, cpu0, stopping)
		}
	}
}

// maxDisplay caps the display data of one cell, figures included.
const maxDisplay = 64 << 20

func bundleSize(b run.MIMEBundle) int {
	n := 0
	for k, v := range b {
		n += len(k) + len(v)
	}
	return n
}

// send writes a request to the kernel's control pipe. The kernel reads
// between cells, so this only waits when a request is larger than the
// pipe; it is bounded all the same.
func (s *Session) send(line []byte, timeout time.Duration) error {
	w := s.proc.Control()
	if f, ok := w.(interface{ SetWriteDeadline(time.Time) error }); ok {
		_ = f.SetWriteDeadline(time.Now().Add(timeout))
	}
	_, err := w.Write(line)
	return err
}

// finish fills a cell's result from the kernel's "done" answer.
func (s *Session) finish(ctx context.Context, res *run.CellResult, a answer, stopping *stop, start time.Time, cpu0 time.Duration) {
	s.collect(ctx, res, start, cpu0)
	res.Result, res.Error = a.Result, a.Error
	switch {
	case stopping != nil:
		res.Status, res.Reason = stopping.status, stopping.reason+"; the session goes on"
	case a.Status == "ok":
		res.Status = run.StatusOK
	default:
		res.Status = run.StatusError
	}
}

// died fills the result of a cell whose kernel is gone (or is being
// killed): the session is dead.
func (s *Session) died(ctx context.Context, res *run.CellResult, start time.Time, cpu0 time.Duration, why *stop) *run.CellResult {
	s.kill()
	kres, _ := s.proc.Wait()
	s.collect(ctx, res, start, cpu0)
	res.State = run.SessionDead
	switch spent := s.spentReason(); {
	case spent != "":
		// The daemon killed the kernel for it: nothing else is the cause.
		res.Status, res.Reason = run.StatusCPULimit, spent
	case kres != nil && kres.Status == run.StatusMemoryLimit:
		// The memory limit is the cause even when a deadline was also
		// being enforced.
		res.Status, res.Reason = run.StatusMemoryLimit, s.deathReason(kres)
	case why != nil:
		res.Status, res.Reason = why.status, why.reason
	case kres != nil:
		res.Status, res.Reason = kres.Status, s.deathReason(kres)
	default:
		res.Status, res.Reason = run.StatusInternalError, "the kernel ended"
	}
	// The reason is stored with the session and repeated by every GET of
	// it: what the kernel put in it (a protocol error) is bounded.
	res.Reason = run.Clip(res.Reason, run.MaxMessage) + "; the session is dead"
	return res
}

// collect takes the cell's output and figures. Cut makes sure every byte
// the kernel wrote before its answer is in.
func (s *Session) collect(ctx context.Context, res *run.CellResult, start time.Time, cpu0 time.Duration) {
	res.WallTime = time.Since(start)
	if cpu, err := s.proc.CPUTime(); err == nil {
		res.CPUTime = cpu - cpu0
	}
	// The output is the session's to keep in order even when the client
	// has gone: only Cut's own bound applies.
	out, _ := s.proc.Cut(context.WithoutCancel(ctx))
	res.Stdout, res.Stderr = out.Stdout, out.Stderr
	res.StdoutTruncated, res.StderrTruncated = out.StdoutTruncated, out.StderrTruncated
}

// kill ends the kernel and its sandbox's processes.
func (s *Session) kill() {
	s.cancel()
	s.proc.Kill()
}

// close kills the kernel and removes the sandbox and the workspace.
func (s *Session) close() error {
	s.mu.Lock()
	s.closed = true
	if s.state != run.SessionDead {
		s.state, s.reason = run.SessionDead, "the session was closed"
	}
	s.mu.Unlock()
	s.kill()
	_, _ = s.proc.Wait()
	err := s.free()
	s.releaseMemory()
	return err
}

// releaseMemory gives the session's memory back to the budget, once.
func (s *Session) releaseMemory() {
	if s.unreserve != nil {
		s.unreserve()
	}
}
