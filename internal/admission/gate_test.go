package admission

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestGateQueueFull(t *testing.T) {
	g := New(1, 1)
	rel, err := g.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		r, err := g.Acquire(context.Background())
		if err == nil {
			r()
		}
		got <- err
	}()
	for g.Waiting() != 1 {
		time.Sleep(time.Millisecond)
	}
	if _, err := g.Acquire(context.Background()); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("third Acquire = %v, want ErrQueueFull", err)
	}
	if !g.Full() {
		t.Error("Full() = false with the slot taken and the queue full")
	}
	rel()
	rel() // a second release is a no-op, not a stolen slot
	if err := <-got; err != nil {
		t.Fatalf("queued Acquire = %v", err)
	}
	if g.Running() != 0 || g.Waiting() != 0 {
		t.Errorf("running %d waiting %d after all released", g.Running(), g.Waiting())
	}
}

func TestGateCanceledWaiter(t *testing.T) {
	g := New(1, 5)
	rel, _ := g.Acquire(context.Background())
	defer rel()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := g.Acquire(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire = %v, want the context's error", err)
	}
	if g.Waiting() != 0 {
		t.Errorf("a canceled waiter stays counted: %d", g.Waiting())
	}
}

// as is a context of tenant.
func as(tenant string) context.Context { return WithTenant(context.Background(), tenant) }

// pending is an Acquire that may still be waiting.
type pending struct {
	done    chan struct{}
	release func()
	err     error
}

func acquireAsync(ctx context.Context, g *Gate) *pending {
	p := &pending{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.release, p.err = g.Acquire(ctx)
	}()
	return p
}

func (p *pending) admitted() bool {
	select {
	case <-p.done:
		return p.err == nil
	default:
		return false
	}
}

// wait waits for p to return and fails unless it was admitted.
func (p *pending) wait(t *testing.T, what string) func() {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: not admitted within 30s", what)
	}
	if p.err != nil {
		t.Fatalf("%s: %v", what, p.err)
	}
	return p.release
}

// waitQueued waits until the gate's queue holds n waiters.
func waitQueued(t *testing.T, g *Gate, n int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); g.Waiting() != n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the queue holds %d waiters, want %d", g.Waiting(), n)
		}
	}
}

func mustAcquire(t *testing.T, g *Gate, tenant string) func() {
	t.Helper()
	rel, err := g.Acquire(as(tenant))
	if err != nil {
		t.Fatalf("Acquire as %s: %v", tenant, err)
	}
	return rel
}

// TestGateFewestHeldFirst: a freed slot goes to the waiting tenant that
// holds the fewest, not to the first in the queue. A lone tenant on a gate
// of two takes both slots.
func TestGateFewestHeldFirst(t *testing.T) {
	g := New(2, 10)
	a1, a2 := mustAcquire(t, g, "A"), mustAcquire(t, g, "A")
	a3 := acquireAsync(as("A"), g)
	waitQueued(t, g, 1)
	a4 := acquireAsync(as("A"), g)
	waitQueued(t, g, 2)
	b1 := acquireAsync(as("B"), g)
	waitQueued(t, g, 3)

	a1()
	relB := b1.wait(t, "B, last in the queue but holding none")
	if a3.admitted() || a4.admitted() {
		t.Fatal("A's waiter took the slot freed while B, holding none, waited")
	}
	a2()
	relA3 := a3.wait(t, "A's first waiter, once A holds none")
	if a4.admitted() {
		t.Fatal("A's second waiter admitted with both slots taken")
	}
	relB()
	relA3()
	a4.wait(t, "A's second waiter")()
	if g.Running() != 0 || g.Waiting() != 0 {
		t.Errorf("running %d waiting %d after all released", g.Running(), g.Waiting())
	}
}

// TestGateKeepsLastSlotForRecentTenant: a lone tenant takes every slot;
// once another tenant has held one, a tenant holding some may not take
// the last free slot for RecentTenant, and the other takes it at once.
// When the reservation lapses the waiter gets the slot.
func TestGateKeepsLastSlotForRecentTenant(t *testing.T) {
	g := New(2, 10)
	var mu sync.Mutex
	clock := time.Unix(1000, 0)
	g.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }

	a1, a2 := mustAcquire(t, g, "A"), mustAcquire(t, g, "A") // alone: both
	a1()
	a2()
	mustAcquire(t, g, "B")() // B has held one; holds none now
	relA := mustAcquire(t, g, "A")
	a2p := acquireAsync(as("A"), g)
	waitQueued(t, g, 1)
	if a2p.admitted() {
		t.Fatal("A took the last slot while B, recent, held none")
	}
	relB := mustAcquire(t, g, "B") // at once, past A's waiter
	relB()
	advance(RecentTenant - time.Millisecond)
	g.redispatch()
	if a2p.admitted() {
		t.Fatal("A took the last slot before B's reservation lapsed")
	}
	advance(time.Millisecond)
	g.redispatch()
	relA2 := a2p.wait(t, "A's waiter, B's reservation lapsed")
	relA()
	relA2()
	if g.Running() != 0 || g.Waiting() != 0 {
		t.Errorf("running %d waiting %d after all released", g.Running(), g.Waiting())
	}
}

// TestGateReservationRetried: a waiter kept from the last slot by a
// reservation gets it when the reservation lapses, with no release to
// wake it (real clock, a short window).
func TestGateReservationRetried(t *testing.T) {
	g := New(2, 10)
	g.recent = 50 * time.Millisecond
	mustAcquire(t, g, "B")()
	relA := mustAcquire(t, g, "A")
	defer relA()
	start := time.Now()
	rel, err := g.Acquire(as("A"))
	if err != nil {
		t.Fatal(err)
	}
	rel()
	if took := time.Since(start); took < g.recent/2 {
		t.Errorf("A took the last slot after %s, within B's reservation", took)
	}
}

// TestGateQueueShare: one tenant may fill half the queue; past that it
// gets a QueueShareError (an ErrQueueFull) while others still queue, and
// past the whole queue everyone gets ErrQueueFull.
func TestGateQueueShare(t *testing.T) {
	g := New(1, 4)
	relA := mustAcquire(t, g, "A")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var waiters []*pending
	for i, tenant := range []string{"A", "A"} {
		waiters = append(waiters, acquireAsync(WithTenant(ctx, tenant), g))
		waitQueued(t, g, i+1)
	}
	_, err := g.Acquire(as("A"))
	var se *QueueShareError
	if !errors.As(err, &se) || !errors.Is(err, ErrQueueFull) || se.Waiting != 2 || se.Queue != 4 {
		t.Fatalf("A's third waiter: %v, want a QueueShareError of 2 waiting in 4", err)
	}
	t.Logf("the refusal: %v", err)
	for i, tenant := range []string{"B", "B"} {
		waiters = append(waiters, acquireAsync(WithTenant(ctx, tenant), g))
		waitQueued(t, g, 3+i)
	}
	_, err = g.Acquire(as("C"))
	if !errors.Is(err, ErrQueueFull) || errors.As(err, &se) {
		t.Fatalf("C with the queue full: %v, want the plain ErrQueueFull", err)
	}
	cancel()
	for _, w := range waiters {
		<-w.done
		if !errors.Is(w.err, context.Canceled) {
			t.Errorf("a canceled waiter: %v", w.err)
		}
	}
	relA()
	if g.Running() != 0 || g.Waiting() != 0 {
		t.Errorf("running %d waiting %d after all released", g.Running(), g.Waiting())
	}
}

// TestGateHammer: four tenants acquiring, some canceling, under -race:
// never more than the capacity at once, every admitted caller released,
// and nothing held or queued at the end.
func TestGateHammer(t *testing.T) {
	g := New(3, 1000)
	g.recent = time.Millisecond
	var now, peak atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 600; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithCancel(as(string(rune('A' + i%4))))
			defer cancel()
			if i%5 == 0 {
				go cancel()
			}
			rel, err := g.Acquire(ctx)
			if err != nil {
				if !errors.Is(err, context.Canceled) {
					t.Error(err)
				}
				return
			}
			n := now.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			time.Sleep(20 * time.Microsecond)
			now.Add(-1)
			rel()
		}()
	}
	wg.Wait()
	if peak.Load() > 3 {
		t.Errorf("%d runs at once through a gate of 3", peak.Load())
	}
	if g.Running() != 0 || g.Waiting() != 0 {
		t.Errorf("running %d waiting %d at the end", g.Running(), g.Waiting())
	}
}
