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

// TestGateHammer: never more than the capacity at once, every admitted
// caller released, under -race.
func TestGateHammer(t *testing.T) {
	g := New(3, 1000)
	var now, peak atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 500; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rel, err := g.Acquire(context.Background())
			if err != nil {
				t.Error(err)
				return
			}
			n := now.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			time.Sleep(50 * time.Microsecond)
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
