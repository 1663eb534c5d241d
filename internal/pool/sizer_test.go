package pool

import (
	"testing"
	"time"
)

// TestSizer drives a Sizer with a made-up clock: the target follows the
// take rate times the refill time, with headroom, inside its bounds, and
// falls back to the minimum once takes stop.
func TestSizer(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// takes records n takes per second for d, from at, and returns the end.
	takes := func(s *Sizer, at time.Time, perSec int, d time.Duration) time.Time {
		step := time.Second / time.Duration(perSec)
		for end := at.Add(d); at.Before(end); at = at.Add(step) {
			s.Take(at)
		}
		return at
	}
	cases := []struct {
		name    string
		min     int
		max     int
		perSec  int
		refill  time.Duration
		want    int // target right after the takes
		wantMin int // the target is at least this
	}{
		// 20/s × 0.2s = 4 taken per refill: 4 + 2×2 = 8.
		{"steady 20/s", 2, 32, 20, 200 * time.Millisecond, 8, 0},
		// 100/s × 0.2s = 20: 20 + 2×4.47 = 28.9 → 29.
		{"steady 100/s", 2, 64, 100, 200 * time.Millisecond, 29, 0},
		// Demand past the maximum: the maximum.
		{"capped", 2, 10, 100, 200 * time.Millisecond, 10, 0},
		// Little demand: the minimum.
		{"quiet", 3, 32, 1, 10 * time.Millisecond, 3, 0},
		// A maximum below the minimum reads as the minimum.
		{"max below min", 4, 2, 100, 200 * time.Millisecond, 4, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := &Sizer{Min: c.min, Max: c.max, Window: time.Second}
			if got := s.Target(t0); got != c.min {
				t.Fatalf("before any take: target %d, want the minimum %d", got, c.min)
			}
			s.Refilled(c.refill)
			// 10 windows: the average has settled (e^-10 of the gap left).
			end := takes(s, t0, c.perSec, 10*time.Second)
			if got := s.Target(end); got != c.want {
				t.Errorf("target %d after %d takes/s with %v refills (rate %.2f); want %d", got, c.perSec, c.refill, s.Rate(end), c.want)
			}
			// 20 windows without a take: back to the minimum.
			if got := s.Target(end.Add(20 * time.Second)); got != c.min {
				t.Errorf("target %d after demand stopped; want the minimum %d", got, c.min)
			}
		})
	}
}

// TestSizerRate: a steady rate is read as itself, a burst is seen within
// about a window, and the rate halves in 0.69 windows once takes stop.
func TestSizerRate(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := &Sizer{Window: 2 * time.Second}
	at := t0
	for i := 0; i < 50*20; i++ { // 50/s for 20s
		s.Take(at)
		at = at.Add(20 * time.Millisecond)
	}
	if r := s.Rate(at); r < 48 || r > 52 {
		t.Errorf("rate %.2f after 20s at 50/s", r)
	}
	if r := s.Rate(at.Add(1386 * time.Millisecond)); r < 23 || r > 27 {
		t.Errorf("rate %.2f 0.69 windows after the takes stopped; want about half of 50", r)
	}
	// A clock read out of order changes nothing.
	before := s.Rate(at.Add(1386 * time.Millisecond))
	if r := s.Rate(at); r != before {
		t.Errorf("an earlier instant moved the rate from %.2f to %.2f", before, r)
	}

	b := &Sizer{Window: 2 * time.Second}
	at = t0
	for i := 0; i < 40; i++ { // a burst: 40 takes in one second
		b.Take(at)
		at = at.Add(25 * time.Millisecond)
	}
	if r := b.Rate(at); r < 0.6*40*0.5 {
		t.Errorf("rate %.2f after a 40/s burst of one second; the sizer missed it", r)
	}
}

// TestSizerRefillAverage: the refill time moves an eighth of the way to
// each sample, from the first.
func TestSizerRefillAverage(t *testing.T) {
	var s Sizer
	s.Refilled(80 * time.Millisecond)
	if s.Latency() != 80*time.Millisecond {
		t.Fatalf("first sample: %v", s.Latency())
	}
	s.Refilled(160 * time.Millisecond)
	if s.Latency() != 90*time.Millisecond {
		t.Errorf("after 80ms then 160ms: %v, want 90ms", s.Latency())
	}
}

// TestSizerBursts: three takes at once every two seconds is a rate the
// average reads as a target of one, yet each burst needs three sandboxes
// ready. The target holds the burst between bursts and lets it go ten
// windows after the last one.
func TestSizerBursts(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := &Sizer{Min: 1, Max: 8, Window: time.Second}
	s.Refilled(200 * time.Millisecond)
	at := t0
	for range 10 {
		for range 3 {
			s.Take(at)
		}
		at = at.Add(2 * time.Second)
		if got := s.Target(at.Add(-time.Millisecond)); got != 3 {
			t.Fatalf("target %d just before the next burst of 3 (rate %.2f); want 3", got, s.Rate(at))
		}
	}
	// Takes spread wider than a refill time are not a burst.
	s2 := &Sizer{Min: 1, Max: 8, Window: time.Second}
	s2.Refilled(200 * time.Millisecond)
	for i := range 3 {
		s2.Take(t0.Add(time.Duration(i) * 300 * time.Millisecond))
	}
	if got := s2.Target(t0.Add(2 * time.Second)); got != 1 {
		t.Errorf("target %d after 3 takes 300 ms apart with 200 ms refills; want 1", got)
	}
	if got := s.Target(at.Add(10*time.Second + time.Millisecond)); got != 1 {
		t.Errorf("target %d ten windows after the last burst; want the minimum 1", got)
	}
}
