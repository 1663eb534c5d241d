// Package admission bounds the work a daemon takes on: at most N runs at
// once, at most Q more waiting, and a clear "no" past that, so that load
// becomes 429s and not unbounded goroutines and memory.
package admission

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/sandboxd/sandboxd/internal/errdefs"
)

// ErrQueueFull: every slot is busy and the queue is full. Retry later.
var ErrQueueFull = errdefs.New(errdefs.ErrExhausted, "admission queue is full")

// QueueShareError is a request refused because its tenant already has its
// share of the queue waiting, while the queue as a whole has room for
// other tenants. It is an ErrQueueFull.
type QueueShareError struct {
	// Waiting is the tenant's requests in the queue; Share the most it
	// may have there; Queue the queue's size.
	Waiting, Share, Queue int
}

func (e *QueueShareError) Error() string {
	return fmt.Sprintf("%s for this client: it has %d requests waiting for a slot, its share of the queue's %d places (the rest are kept for other clients); retry when one of them is admitted",
		ErrQueueFull, e.Waiting, e.Queue)
}

// Unwrap makes a QueueShareError an ErrQueueFull (of class exhausted).
func (e *QueueShareError) Unwrap() error { return ErrQueueFull }

// tenantKey is the context key of the tenant a request is admitted for.
type tenantKey struct{}

// WithTenant returns ctx carrying tenant: who the work done under ctx is
// admitted for (a token's owner, a client address). Requests of one
// tenant share its slots and its share of the queue.
func WithTenant(ctx context.Context, tenant string) context.Context {
	return context.WithValue(ctx, tenantKey{}, tenant)
}

// Tenant is the tenant ctx carries, "" for none: work without a tenant is
// one tenant of its own.
func Tenant(ctx context.Context) string {
	t, _ := ctx.Value(tenantKey{}).(string)
	return t
}

// Gate admits runs, fairly among tenants (see Acquire). The zero value is
// not usable; call New. Safe for concurrent use.
type Gate struct {
	capacity, queue, share int
	// recent is how long after it last held a slot a tenant holding none
	// keeps the last free slot from the others (see Acquire).
	recent time.Duration
	now    func() time.Time

	mu      sync.Mutex
	running int
	held    map[string]int       // slots each tenant holds
	seen    map[string]time.Time // when each tenant last took or gave back a slot
	waiters []*waiter            // in arrival order
	queued  map[string]int       // waiters of each tenant
	// timer runs dispatch when the last slot's reservation lapses, if
	// a waiter is kept from it; timerAt is when.
	timer   *time.Timer
	timerAt time.Time
}

// RecentTenant is how long a tenant that held a slot and holds none now
// keeps the last free slot from tenants that hold some. It covers a
// client's pause between two requests (a closed loop's think time), so
// that its next request does not find every slot taken by another.
const RecentTenant = 5 * time.Second

// waiter is one Acquire in the queue. granted is set, and ready closed,
// with g.mu held, when a slot is handed to it.
type waiter struct {
	tenant  string
	ready   chan struct{}
	granted bool
}

// New returns a Gate of concurrency slots and a queue of queue waiters, of
// which one tenant may hold at most half (at least one).
func New(concurrency, queue int) *Gate {
	concurrency, queue = max(concurrency, 1), max(queue, 0)
	return &Gate{capacity: concurrency, queue: queue, share: max(queue/2, 1), recent: RecentTenant, now: time.Now,
		held: map[string]int{}, seen: map[string]time.Time{}, queued: map[string]int{}}
}

// Acquire takes a slot for ctx's Tenant, waiting in the queue if there is
// room in it. It fails at once with ErrQueueFull when there is not, or
// with a *QueueShareError when the tenant has its share of the queue
// waiting already, and with ctx's error if ctx ends first. On success,
// release must be called exactly once (more calls do nothing).
//
// Slots are shared among tenants, not handed out in arrival order:
//   - a freed slot goes to the waiting tenant that holds the fewest slots
//     (in arrival order among equals), so a tenant that floods the queue
//     gets one slot in turn with the others, not all of them;
//   - the last free slot is kept for a tenant that holds none but held one
//     within RecentTenant: a tenant with slots already may not take it
//     then, so the other tenant's next request finds a slot at once
//     instead of waiting for a whole run. A lone tenant gets every slot;
//   - one tenant may have at most half the queue waiting.
func (g *Gate) Acquire(ctx context.Context) (release func(), err error) {
	tenant := Tenant(ctx)
	g.mu.Lock()
	if g.mayTake(tenant) {
		g.take(tenant)
		g.mu.Unlock()
		return g.releaser(tenant), nil
	}
	switch {
	case len(g.waiters) >= g.queue:
		g.mu.Unlock()
		return nil, ErrQueueFull
	case g.queued[tenant] >= g.share:
		err := &QueueShareError{Waiting: g.queued[tenant], Share: g.share, Queue: g.queue}
		g.mu.Unlock()
		return nil, err
	}
	w := &waiter{tenant: tenant, ready: make(chan struct{})}
	g.waiters = append(g.waiters, w)
	g.queued[tenant]++
	// Kept from a free slot by a reservation: have it retried when the
	// reservation lapses.
	g.dispatch()
	g.mu.Unlock()

	select {
	case <-w.ready:
		return g.releaser(tenant), nil
	case <-ctx.Done():
	}
	g.mu.Lock()
	if w.granted {
		// A slot came with ctx's end: give it back, to the next waiter.
		g.give(tenant)
		g.dispatch()
		g.mu.Unlock()
		return nil, ctx.Err()
	}
	g.leave(w)
	g.mu.Unlock()
	return nil, ctx.Err()
}

// mayTake reports whether tenant may take a free slot now; g.mu is held.
func (g *Gate) mayTake(tenant string) bool {
	free := g.capacity - g.running
	if free <= 0 {
		return false
	}
	if free > 1 || g.held[tenant] == 0 {
		return true
	}
	// The last free slot, for a tenant that holds some already.
	return g.reservedUntil(tenant).IsZero()
}

// reservedUntil is when the last free slot stops being kept from tenant
// (which holds a slot) for another tenant, one that holds none but held
// one within g.recent; zero if it is not kept. g.mu is held.
func (g *Gate) reservedUntil(tenant string) time.Time {
	now := g.now()
	var until time.Time
	for t, at := range g.seen {
		end := at.Add(g.recent)
		if t != tenant && g.held[t] == 0 && now.Before(end) && end.After(until) {
			until = end
		}
	}
	return until
}

// forget drops the tenants that hold no slot and are no longer recent,
// so that g.seen holds only the tenants of the last g.recent. g.mu is
// held.
func (g *Gate) forget() {
	now := g.now()
	for t, at := range g.seen {
		if g.held[t] == 0 && !now.Before(at.Add(g.recent)) {
			delete(g.seen, t)
		}
	}
}

func (g *Gate) take(tenant string) {
	g.running++
	g.held[tenant]++
	g.seen[tenant] = g.now()
}

func (g *Gate) give(tenant string) {
	g.running--
	if g.held[tenant]--; g.held[tenant] <= 0 {
		delete(g.held, tenant)
	}
	g.forget()
	g.seen[tenant] = g.now()
}

// leave takes w out of the queue; g.mu is held.
func (g *Gate) leave(w *waiter) {
	for i, x := range g.waiters {
		if x == w {
			g.waiters = append(g.waiters[:i], g.waiters[i+1:]...)
			break
		}
	}
	if g.queued[w.tenant]--; g.queued[w.tenant] <= 0 {
		delete(g.queued, w.tenant)
	}
}

// dispatch hands free slots to waiters, the fewest-holding tenant's first
// waiter each time, while it may take one; g.mu is held.
func (g *Gate) dispatch() {
	for len(g.waiters) > 0 {
		var next *waiter
		for _, w := range g.waiters {
			if next == nil || g.held[w.tenant] < g.held[next.tenant] {
				next = w
			}
		}
		// The fewest-holding waiter is the one the rules favour most: if
		// it may not take a slot, no waiter may.
		if !g.mayTake(next.tenant) {
			if g.running < g.capacity {
				g.retryAt(g.reservedUntil(next.tenant))
			}
			return
		}
		g.leave(next)
		g.take(next.tenant)
		next.granted = true
		close(next.ready)
	}
}

// retryAt has dispatch run again at t, when the reservation that keeps
// the waiters from the last free slot lapses; g.mu is held.
func (g *Gate) retryAt(t time.Time) {
	if t.IsZero() || (g.timer != nil && !g.timerAt.After(t)) {
		return
	}
	if g.timer != nil {
		g.timer.Stop()
	}
	g.timerAt = t
	g.timer = time.AfterFunc(t.Sub(g.now()), g.redispatch)
}

// redispatch is dispatch on its own, from the retry timer.
func (g *Gate) redispatch() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.timer, g.timerAt = nil, time.Time{}
	g.dispatch()
}

func (g *Gate) releaser(tenant string) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			defer g.mu.Unlock()
			g.give(tenant)
			g.dispatch()
		})
	}
}

// Running is the number of admitted runs.
func (g *Gate) Running() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.running
}

// Waiting is the number of runs in the queue.
func (g *Gate) Waiting() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.waiters)
}

// Full reports whether a new run would be refused now: every slot is
// taken and the queue is full.
func (g *Gate) Full() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.running >= g.capacity && len(g.waiters) >= g.queue
}

// Capacity is the number of slots.
func (g *Gate) Capacity() int { return g.capacity }
