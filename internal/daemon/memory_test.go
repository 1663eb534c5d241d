package daemon

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestMemoryReturn: small answers ask for nothing; a burst of large ones
// gets one return, after the delay; a second burst within the gap waits
// for the gap to pass.
func TestMemoryReturn(t *testing.T) {
	var frees atomic.Int32
	m := &memoryReturn{min: 100, delay: 50 * time.Millisecond, gap: 400 * time.Millisecond, free: func() { frees.Add(1) }, now: time.Now}
	m.answerDone(99)
	time.Sleep(150 * time.Millisecond)
	if n := frees.Load(); n != 0 {
		t.Fatalf("a small answer asked for %d returns", n)
	}
	for range 4 {
		m.answerDone(100)
	}
	waitFor(t, &frees, 1, 5*time.Second)
	start := time.Now()
	m.answerDone(1000)
	waitFor(t, &frees, 2, 5*time.Second)
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Errorf("the second return came %s after its answer, within the gap", took)
	}
	time.Sleep(100 * time.Millisecond)
	if n := frees.Load(); n != 2 {
		t.Errorf("%d returns for two bursts", n)
	}
}

func waitFor(t *testing.T, n *atomic.Int32, want int32, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for n.Load() < want {
		if time.Now().After(deadline) {
			t.Fatalf("%d returns after %s; want %d", n.Load(), timeout, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
