// Package pool keeps sandboxes started ahead of demand, so a run takes one
// that is ready instead of paying for namespaces, a new root and an
// interpreter's start-up. Each sandbox serves exactly one run and is then
// destroyed; the pool refills in the background, several at once, at the
// least CPU weight, and keeps as many ready as the demand it sees asks for
// (Sizer). Nothing of one run can reach the next: they never share a
// sandbox.
package pool

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sandboxd/sandboxd/internal/isolate"
	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
)

// Config configures one pool.
type Config struct {
	// Min is how many ready sandboxes the pool keeps at least (0 disables
	// it). Under demand it keeps more (Sizer), up to Max.
	Min int
	// Max is the most it keeps ready or starting (below Min reads as Min).
	Max int
	// Refills is how many sandboxes may start at once (default 1). Those
	// above Min start at the least CPU weight, so growth yields to live
	// runs; those that bring the pool up to Min start at the default
	// weight, since a floor starved by busy runs would never fill, and
	// then every take would start cold.
	Refills int
	// Idle is how long a sandbox above the target waits before it is
	// destroyed (default 30s): the pool shrinks when demand falls.
	Idle time.Duration
	// Window is the Sizer's (DefaultWindow if zero).
	Window time.Duration
	// Wait bounds how long a take on an empty pool waits for a sandbox
	// being started (default 10s): it waits only while fewer takes wait
	// than sandboxes are being started, and raises one of those to the
	// default CPU weight, so it is a cold start already under way. Takes
	// that wait are served first come, first served. Negative: never
	// wait.
	Wait time.Duration
	// Reserve, if set, reserves the memory limit of a sandbox the pool
	// starts, until it is taken (the run's own reservation covers it from
	// there) or destroyed: the daemon's memory budget (Reserve of
	// admission.Budget). A refused reservation starts no sandbox.
	Reserve func(limits.Bytes) (release func(), err error)
	// Argv and Env start the waiting program: a runtime's warm runner
	// (internal/runtimes.Program), which reads a run's control on fd 3.
	Argv, Env []string
	// Zygote, when set, forks each run's process into its sandbox
	// (isolate.StartEntered): no interpreter waits in a pooled sandbox,
	// and Argv and Files are not used; Env still is the interpreter's
	// environment, the zygote's.
	Zygote *isolate.Zygote
	// Files are the waiting program's own, written under the workspace's
	// reserved .sandboxd directory before it starts.
	Files []run.File
	// Limits the sandboxes start with: generous (the server's ceilings),
	// since a run's own limits are applied when it takes one. Tmpfs is
	// fixed at start, so the pool serves only runs of this Tmpfs.
	Limits limits.Limits
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Entry is a ready sandbox: its workspace and its held process.
type Entry struct {
	Workspace *isolate.Workspace
	Process   *isolate.HeldProcess
	readyAt   time.Time
	// unreserve gives back the entry's memory reservation (never nil).
	unreserve func()
}

// Close removes what the entry holds; call it after the run.
func (e *Entry) Close() error {
	e.Process.Kill()
	_, _ = e.Process.Wait()
	err := e.Workspace.Close()
	e.unreserve()
	return err
}

// Stats are the pool's figures for metrics.
type Stats struct {
	// Ready are the sandboxes ready; Starting those being started
	// (refills in flight); Waiting the takes waiting for one of those;
	// Target what the Sizer asks for now; Min and Max its bounds.
	Ready, Starting, Waiting, Target, Min, Max int
	// Hits are takes served; Waits the hits that waited for a sandbox
	// being started; Misses the takes that found none (the run started
	// cold).
	Hits, Waits, Misses uint64
	RefillFailures      uint64
	// Shrunk counts the sandboxes destroyed for idling above the target;
	// BudgetRefusals the refills the memory budget refused.
	Shrunk, BudgetRefusals uint64
	// LastRefill is how long the last sandbox took to start; AvgRefill
	// the Sizer's moving average.
	LastRefill, AvgRefill time.Duration
	// Rate is the take rate the Sizer sees, per second.
	Rate float64
}

// Pool is a pool of ready sandboxes of one kind.
type Pool struct {
	cfg  Config
	r    *isolate.Runner
	log  *slog.Logger
	now  func() time.Time
	wake chan struct{}
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup

	mu sync.Mutex
	// ready is first in, first out: the oldest is the first taken, and
	// the first destroyed when the pool shrinks.
	ready []*Entry
	// starting are the sandboxes being started, oldest first.
	starting []*inflight
	sizer    Sizer
	// waiters are the takes waiting on an empty pool, oldest first: an
	// entry that becomes ready is handed to the oldest. Not a broadcast
	// to all of them: whichever woke first would win, and under steady
	// demand one take lost that race again and again (a second's wait at
	// the p99 of bench/pool, while refills took 0.1 s).
	waiters      []*waiter
	backoffUntil time.Time
	backoff      time.Duration

	hits, waits, misses, failures, shrunk, refused atomic.Uint64
	lastRefill                                     atomic.Int64
}

// waiter is a take waiting on an empty pool; got receives its entry.
type waiter struct{ got chan *Entry }

// inflight is a sandbox being started.
type inflight struct {
	// proc is set once the program runs (nil before); claimed once a take
	// has waited for it (it keeps the default CPU weight then, whichever
	// take it serves). Both under Pool.mu.
	proc    *isolate.HeldProcess
	claimed bool
	// floor: it brings the pool up to Min, so it runs at the default
	// CPU weight from the start.
	floor bool
}

// New starts a pool and its manager. ctx bounds the pool's life; Close
// ends it earlier.
func New(ctx context.Context, r *isolate.Runner, cfg Config) *Pool {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Min = max(cfg.Min, 0)
	cfg.Max = max(cfg.Max, cfg.Min)
	cfg.Refills = max(cfg.Refills, 1)
	if cfg.Idle <= 0 {
		cfg.Idle = 30 * time.Second
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	ctx, stop := context.WithCancel(ctx)
	p := &Pool{
		cfg: cfg, r: r, log: cfg.Logger, now: now, wake: make(chan struct{}, 1), ctx: ctx, stop: stop,
		sizer:   Sizer{Min: cfg.Min, Max: cfg.Max, Window: cfg.Window},
		backoff: minBackoff,
	}
	if cfg.Min > 0 {
		p.wg.Add(1)
		go p.manage()
	}
	return p
}

const minBackoff = 100 * time.Millisecond

// Fits reports whether a run with these limits can use the pool.
func (p *Pool) Fits(l limits.Limits) bool {
	return p.cfg.Min > 0 && l.Tmpfs == p.cfg.Limits.Tmpfs
}

// Take returns a ready sandbox, or nil when none is ready: the caller then
// starts one cold. On an empty pool it waits (Config.Wait) while fewer
// takes wait than sandboxes are being started, each wait raising one of
// those to the default CPU weight: it is then further along than a cold
// start would be. Takes that wait are served in the order they came.
// The returned entry's memory reservation is given back: the run that
// takes it holds its own.
func (p *Pool) Take(ctx context.Context) *Entry {
	defer p.kick()
	p.mu.Lock()
	p.sizer.Take(p.now())
	e, dead := p.pop()
	var (
		w       *waiter
		promote *isolate.HeldProcess
	)
	if e == nil && p.cfg.Wait >= 0 && len(p.waiters) < len(p.starting) {
		w = &waiter{got: make(chan *Entry, 1)}
		p.waiters = append(p.waiters, w)
		// The oldest starting sandboxes are the next served: as many
		// of them as takes wait run at the default weight.
		if f := p.starting[len(p.waiters)-1]; !f.claimed {
			f.claimed, promote = true, f.proc
		}
	}
	p.mu.Unlock()
	for _, d := range dead {
		_ = d.Close()
	}
	if e == nil && w == nil {
		p.misses.Add(1)
		return nil
	}
	if w != nil {
		if promote != nil {
			p.foreground(promote)
		}
		p.kick() // a refill slot may be free: the target just rose
		if e = p.await(ctx, w); e == nil {
			p.misses.Add(1)
			return nil
		}
		p.waits.Add(1)
	}
	p.hits.Add(1)
	e.unreserve()
	e.unreserve = func() {}
	return e
}

// await waits for w's entry, for at most Config.Wait; nil if it gave up.
func (p *Pool) await(ctx context.Context, w *waiter) *Entry {
	t := time.NewTimer(cmp.Or(p.cfg.Wait, 10*time.Second))
	defer t.Stop()
	select {
	case e := <-w.got:
		return e
	case <-t.C:
	case <-ctx.Done():
	case <-p.ctx.Done():
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if i := slices.Index(p.waiters, w); i >= 0 {
		p.waiters = slices.Delete(p.waiters, i, i+1)
		return nil
	}
	// Handed over as it gave up: it is the caller's, to run or close
	// (never left in a pool that may be closing).
	return <-w.got
}

// deliver hands a ready entry to the oldest waiting take, or puts it in
// the pool when none waits. p.mu is held.
func (p *Pool) deliver(e *Entry) {
	if len(p.waiters) > 0 {
		w := p.waiters[0]
		p.waiters = slices.Delete(p.waiters, 0, 1)
		w.got <- e // buffered: never blocks
		return
	}
	p.ready = append(p.ready, e)
}

// foreground raises a sandbox a take waits for to the default CPU weight.
func (p *Pool) foreground(h *isolate.HeldProcess) {
	if err := h.Foreground(); err != nil {
		p.log.Warn("raise a warm sandbox's CPU weight", "err", err)
	}
}

// pop takes the oldest ready entry off the pool, and with it those that
// died waiting (they should not), for the caller to close outside p.mu.
// p.mu is held.
func (p *Pool) pop() (e *Entry, dead []*Entry) {
	for len(p.ready) > 0 {
		e := p.ready[0]
		p.ready[0] = nil
		p.ready = p.ready[1:]
		select {
		case <-e.Process.Done():
			dead = append(dead, e)
			continue
		default:
		}
		return e, dead
	}
	return nil, dead
}

func (p *Pool) kick() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// manage keeps the pool at the Sizer's target: it starts refills, up to
// Config.Refills at once, while ready and starting sandboxes are fewer
// than the target, and destroys the oldest ready sandbox above the target
// once it has waited Config.Idle.
func (p *Pool) manage() {
	defer p.wg.Done()
	tick := time.NewTicker(min(p.cfg.Idle/4, time.Second))
	defer tick.Stop()
	for {
		p.adjust()
		select {
		case <-p.wake:
		case <-tick.C:
		case <-p.ctx.Done():
			return
		}
	}
}

// adjust starts the refills and destroys the idle sandboxes that the
// target asks for now.
func (p *Pool) adjust() {
	if p.ctx.Err() != nil {
		return
	}
	now := p.now()
	var idle []*Entry
	p.mu.Lock()
	target := p.sizer.Target(now)
	for len(p.ready)+len(p.starting) < target && len(p.starting) < p.cfg.Refills && !now.Before(p.backoffUntil) {
		unreserve := func() {}
		if p.cfg.Reserve != nil {
			release, err := p.cfg.Reserve(p.cfg.Limits.Memory)
			if err != nil {
				// Runs and sessions hold the budget: no more warm
				// sandboxes until one gives some back.
				p.refused.Add(1)
				break
			}
			unreserve = release
		}
		f := &inflight{floor: len(p.ready)+len(p.starting) < p.cfg.Min}
		p.starting = append(p.starting, f)
		p.wg.Add(1)
		go p.refill(f, unreserve)
	}
	for len(p.ready) > target && now.Sub(p.ready[0].readyAt) >= p.cfg.Idle {
		idle = append(idle, p.ready[0])
		p.ready[0] = nil
		p.ready = p.ready[1:]
	}
	p.mu.Unlock()
	for _, e := range idle {
		p.shrunk.Add(1)
		if err := e.Close(); err != nil {
			p.log.Warn("destroy an idle warm sandbox", "err", err)
		}
	}
}

// refill starts one sandbox and makes it ready.
func (p *Pool) refill(f *inflight, unreserve func()) {
	defer p.wg.Done()
	defer p.kick()
	began := p.now()
	e, err := p.start(f)
	p.mu.Lock()
	p.starting = slices.DeleteFunc(p.starting, func(g *inflight) bool { return g == f })
	if err != nil {
		failed := p.ctx.Err() == nil
		if failed {
			p.backoffUntil = p.now().Add(p.backoff)
			p.backoff = min(2*p.backoff, 10*time.Second)
		}
		p.mu.Unlock()
		unreserve()
		if failed {
			p.failures.Add(1)
			p.log.Warn("warm sandbox failed to start", "err", err)
		}
		return
	}
	p.backoff = minBackoff
	took := p.now().Sub(began)
	p.lastRefill.Store(int64(took))
	p.sizer.Refilled(took)
	e.readyAt, e.unreserve = p.now(), unreserve
	if p.ctx.Err() != nil {
		// Close is draining: the entry is not for the pool any more.
		p.mu.Unlock()
		_ = e.Close()
		return
	}
	p.deliver(e)
	p.mu.Unlock()
}

func (p *Pool) start(f *inflight) (*Entry, error) {
	ws, err := p.r.NewWorkspace(p.cfg.Limits.Tmpfs)
	if err != nil {
		return nil, err
	}
	var proc *isolate.HeldProcess
	e := isolate.Exec{Argv: p.cfg.Argv, Env: p.cfg.Env, Limits: p.cfg.Limits}
	if p.cfg.Zygote != nil {
		proc, err = p.r.StartEntered(p.ctx, ws, e, p.cfg.Zygote)
	} else {
		for _, f := range p.cfg.Files {
			if err := ws.WriteInternal(f); err != nil {
				_ = ws.Close()
				return nil, fmt.Errorf("start warm sandbox: %w", err)
			}
		}
		proc, err = p.r.StartHeld(p.ctx, ws, e)
	}
	if err != nil {
		_ = ws.Close()
		return nil, fmt.Errorf("start warm sandbox: %w", err)
	}
	p.mu.Lock()
	f.proc = proc
	claimed := f.claimed || f.floor
	p.mu.Unlock()
	if claimed {
		p.foreground(proc)
	}
	if err := proc.WaitReady(p.ctx); err != nil {
		proc.Kill()
		_, _ = proc.Wait()
		_ = ws.Close()
		return nil, fmt.Errorf("warm sandbox start-up: %w", err)
	}
	return &Entry{Workspace: ws, Process: proc, unreserve: func() {}}, nil
}

// Stats returns the pool's figures.
func (p *Pool) Stats() Stats {
	now := p.now()
	p.mu.Lock()
	st := Stats{
		Ready: len(p.ready), Starting: len(p.starting), Waiting: len(p.waiters), Target: p.sizer.Target(now), Min: p.cfg.Min, Max: p.cfg.Max,
		AvgRefill: p.sizer.Latency(), Rate: p.sizer.Rate(now),
	}
	p.mu.Unlock()
	if p.cfg.Min == 0 {
		st.Target = 0
	}
	st.Hits, st.Waits, st.Misses = p.hits.Load(), p.waits.Load(), p.misses.Load()
	st.RefillFailures, st.Shrunk, st.BudgetRefusals = p.failures.Load(), p.shrunk.Load(), p.refused.Load()
	st.LastRefill = time.Duration(p.lastRefill.Load())
	return st
}

// Close stops the manager, waits for the refills in flight and destroys
// every ready sandbox.
func (p *Pool) Close() error {
	p.stop()
	p.wg.Wait()
	p.mu.Lock()
	ready := p.ready
	p.ready = nil
	p.mu.Unlock()
	var errs []error
	for _, e := range ready {
		errs = append(errs, e.Close())
	}
	return errors.Join(errs...)
}
