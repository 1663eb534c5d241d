// Package admission bounds the work a daemon takes on: at most N runs at
// once, at most Q more waiting, and a clear "no" past that, so that load
// becomes 429s and not unbounded goroutines and memory.
package admission

import (
	"context"
	"sync/atomic"

	"github.com/sandboxd/sandboxd/internal/errdefs"
)

// ErrQueueFull: every slot is busy and the queue is full. Retry later.
var ErrQueueFull = errdefs.New(errdefs.ErrExhausted, "admission queue is full")

// Gate admits runs. The zero value is not usable; call New.
type Gate struct {
	slots   chan struct{}
	queue   int64
	waiting atomic.Int64
	running atomic.Int64
}

// New returns a Gate of concurrency slots and a queue of queue waiters.
func New(concurrency, queue int) *Gate {
	if concurrency < 1 {
		concurrency = 1
	}
	return &Gate{slots: make(chan struct{}, concurrency), queue: int64(max(queue, 0))}
}

// Acquire takes a slot, waiting in the queue if there is room in it. It
// fails at once with ErrQueueFull when there is not, and with ctx's error if
// ctx ends first. On success, release must be called exactly once.
func (g *Gate) Acquire(ctx context.Context) (release func(), err error) {
	select {
	case g.slots <- struct{}{}:
		return g.admitted(), nil
	default:
	}
	// Count ourselves in before checking, so two racing callers cannot both
	// take the last place.
	if g.waiting.Add(1) > g.queue {
		g.waiting.Add(-1)
		return nil, ErrQueueFull
	}
	defer g.waiting.Add(-1)
	select {
	case g.slots <- struct{}{}:
		return g.admitted(), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (g *Gate) admitted() func() {
	g.running.Add(1)
	var once atomic.Bool
	return func() {
		if once.CompareAndSwap(false, true) {
			g.running.Add(-1)
			<-g.slots
		}
	}
}

// Running is the number of admitted runs.
func (g *Gate) Running() int { return int(g.running.Load()) }

// Waiting is the number of runs in the queue.
func (g *Gate) Waiting() int { return int(g.waiting.Load()) }

// Full reports whether a new run would be refused now.
func (g *Gate) Full() bool {
	return len(g.slots) == cap(g.slots) && g.waiting.Load() >= g.queue
}

// Capacity is the number of slots.
func (g *Gate) Capacity() int { return cap(g.slots) }
