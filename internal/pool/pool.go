// Package pool keeps sandboxes started ahead of demand, so a run takes one
// that is ready instead of paying for namespaces, a new root and an
// interpreter's start-up. Each sandbox serves exactly one run and is then
// destroyed; the pool refills in the background. Nothing of one run can
// reach the next: they never share a sandbox.
package pool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sandboxd/sandboxd/internal/isolate"
	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
)

// Config configures one pool.
type Config struct {
	// Size is how many ready sandboxes the pool keeps (0 disables it).
	Size int
	// Argv and Env start the waiting program: a runtime's warm runner
	// (internal/runtimes.Program), which reads a run's control on fd 3.
	Argv, Env []string
	// Files are the waiting program's own, written under the workspace's
	// reserved .sandboxd directory before it starts.
	Files []run.File
	// Limits the sandboxes start with: generous (the server's ceilings),
	// since a run's own limits are applied when it takes one. Tmpfs is
	// fixed at start, so the pool serves only runs of this Tmpfs.
	Limits limits.Limits
	Logger *slog.Logger
}

// Entry is a ready sandbox: its workspace and its held process.
type Entry struct {
	Workspace *isolate.Workspace
	Process   *isolate.HeldProcess
}

// Close removes what the entry holds; call it after the run.
func (e *Entry) Close() error {
	e.Process.Kill()
	_, _ = e.Process.Wait()
	return e.Workspace.Close()
}

// Stats are the pool's figures for metrics.
type Stats struct {
	Ready, Size    int
	Hits, Misses   uint64
	RefillFailures uint64
	// LastRefill is how long the last sandbox took to start.
	LastRefill time.Duration
}

// Pool is a pool of ready sandboxes of one kind.
type Pool struct {
	cfg    Config
	r      *isolate.Runner
	log    *slog.Logger
	ready  chan *Entry
	refill chan struct{}
	ctx    context.Context
	stop   context.CancelFunc
	wg     sync.WaitGroup

	hits, misses, failures atomic.Uint64
	lastRefill             atomic.Int64
}

// New starts a pool and its refiller. ctx bounds the pool's life; Close
// ends it earlier.
func New(ctx context.Context, r *isolate.Runner, cfg Config) *Pool {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, stop := context.WithCancel(ctx)
	p := &Pool{cfg: cfg, r: r, log: cfg.Logger, ready: make(chan *Entry, max(cfg.Size, 0)), refill: make(chan struct{}, 1), ctx: ctx, stop: stop}
	if cfg.Size > 0 {
		p.wg.Add(1)
		go p.refiller()
	}
	return p
}

// Fits reports whether a run with these limits can use the pool.
func (p *Pool) Fits(l limits.Limits) bool {
	return p.cfg.Size > 0 && l.Tmpfs == p.cfg.Limits.Tmpfs
}

// Take returns a ready sandbox, or nil when none is ready: the caller then
// starts one cold, never waits.
func (p *Pool) Take() *Entry {
	defer p.kick()
	for {
		select {
		case e := <-p.ready:
			select {
			case <-e.Process.Done():
				// It died waiting (it should not): drop it, try the next.
				_ = e.Close()
				continue
			default:
			}
			p.hits.Add(1)
			return e
		default:
			p.misses.Add(1)
			return nil
		}
	}
}

func (p *Pool) kick() {
	select {
	case p.refill <- struct{}{}:
	default:
	}
}

// refiller keeps the pool full, one sandbox at a time so a refill never
// takes more than one core from the runs it serves.
func (p *Pool) refiller() {
	defer p.wg.Done()
	backoff := 100 * time.Millisecond
	for {
		for len(p.ready) < cap(p.ready) {
			if p.ctx.Err() != nil {
				return
			}
			e, err := p.start()
			if err != nil {
				p.failures.Add(1)
				p.log.Warn("warm sandbox failed to start", "err", err)
				select {
				case <-time.After(backoff):
					backoff = min(2*backoff, 10*time.Second)
					continue
				case <-p.ctx.Done():
					return
				}
			}
			backoff = 100 * time.Millisecond
			select {
			case p.ready <- e:
			default:
				_ = e.Close()
			}
		}
		select {
		case <-p.refill:
		case <-p.ctx.Done():
			return
		}
	}
}

func (p *Pool) start() (*Entry, error) {
	began := time.Now()
	ws, err := p.r.NewWorkspace(p.cfg.Limits.Tmpfs)
	if err != nil {
		return nil, err
	}
	for _, f := range p.cfg.Files {
		if err := ws.WriteInternal(f); err != nil {
			_ = ws.Close()
			return nil, fmt.Errorf("start warm sandbox: %w", err)
		}
	}
	proc, err := p.r.StartHeld(p.ctx, ws, isolate.Exec{Argv: p.cfg.Argv, Env: p.cfg.Env, Limits: p.cfg.Limits})
	if err != nil {
		_ = ws.Close()
		return nil, fmt.Errorf("start warm sandbox: %w", err)
	}
	if err := proc.WaitReady(p.ctx); err != nil {
		proc.Kill()
		_, _ = proc.Wait()
		_ = ws.Close()
		return nil, fmt.Errorf("warm sandbox start-up: %w", err)
	}
	p.lastRefill.Store(int64(time.Since(began)))
	return &Entry{Workspace: ws, Process: proc}, nil
}

// Stats returns the pool's figures.
func (p *Pool) Stats() Stats {
	return Stats{
		Ready: len(p.ready), Size: p.cfg.Size,
		Hits: p.hits.Load(), Misses: p.misses.Load(), RefillFailures: p.failures.Load(),
		LastRefill: time.Duration(p.lastRefill.Load()),
	}
}

// Close stops the refiller and destroys every ready sandbox.
func (p *Pool) Close() error {
	p.stop()
	p.wg.Wait()
	var errs []error
	for {
		select {
		case e := <-p.ready:
			errs = append(errs, e.Close())
		default:
			return errors.Join(errs...)
		}
	}
}
