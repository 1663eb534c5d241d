package pool

import (
	"math"
	"time"
)

// DefaultWindow is the time constant of the take rate's moving average
// when Sizer.Window is zero.
const DefaultWindow = 2 * time.Second

// Sizer turns the demand a pool observes into the number of sandboxes it
// should keep ready (RATIONALE.md, "Warm pool"):
//
//	d      = takes per second (an exponentially decaying average)
//	         × how long a refill takes (a moving average)
//	target = ⌈d + 2√d⌉, between Min and Max
//
// d is how many sandboxes are taken while one is being replaced; takes
// arrive roughly as a Poisson process, whose count over that time has a
// standard deviation of √d, so two of them cover the bursts. A take that
// found the pool empty counts as a take: misses raise the target too.
//
// Clients are not Poisson: an agent fans out three runs at once every
// few seconds, a rate the average reads as one or two a second and a
// target of one. So the Sizer also keeps the most takes it saw within
// one refill time of each other (the burst) and holds that number for
// ten Windows after it was last reached: the target is at least the
// burst. A pool that kept a burst's sandboxes ready serves the next
// burst from memory, not from a fork, and gives them back once the
// bursts stop (the pool's idle time).
//
// A Sizer is a value with no clock of its own: every method takes the
// time, so a test drives it with any sequence of instants. It is not safe
// for concurrent use; the pool calls it under its lock.
type Sizer struct {
	// Min and Max bound the target (Min ≤ Max; Max below Min reads as Min).
	Min, Max int
	// Window is the rate's time constant (DefaultWindow if zero): a burst
	// is seen within about one Window, and a rate that stops halves in
	// 0.7 Window.
	Window time.Duration

	rate    float64 // takes per second, as of at
	at      time.Time
	latency time.Duration // the refills' moving average

	recent  []time.Time // the last Max takes, oldest first
	burst   int         // the most takes seen within one refill time
	burstAt time.Time   // when burst was last reached
}

// Take records a take at now.
func (s *Sizer) Take(now time.Time) {
	s.decay(now)
	// Each event adds 1/τ: a steady λ events per second settles at λ.
	s.rate += 1 / s.window().Seconds()

	// The takes within one refill time of this one, this one included.
	// More than Max cannot raise the target, so no more are kept.
	if keep := max(s.Max, s.Min, 1); len(s.recent) >= keep {
		s.recent = append(s.recent[:0], s.recent[len(s.recent)-keep+1:]...)
	}
	s.recent = append(s.recent, now)
	n := 0
	for _, at := range s.recent {
		if now.Sub(at) <= s.latency {
			n++
		}
	}
	if n >= s.burst || now.Sub(s.burstAt) > s.hold() {
		s.burst, s.burstAt = n, now
	}
}

// Refilled records how long a sandbox took to start: the average moves
// an eighth of the way to it (the first sample is taken as is).
func (s *Sizer) Refilled(d time.Duration) {
	if s.latency == 0 {
		s.latency = d
		return
	}
	s.latency += (d - s.latency) / 8
}

// Rate is the take rate at now, in takes per second.
func (s *Sizer) Rate(now time.Time) float64 {
	s.decay(now)
	return s.rate
}

// Latency is the refills' moving average (0 before the first).
func (s *Sizer) Latency() time.Duration { return s.latency }

// Target is the number of sandboxes to keep ready at now.
func (s *Sizer) Target(now time.Time) int {
	d := s.Rate(now) * s.latency.Seconds()
	t := int(math.Ceil(d + 2*math.Sqrt(d)))
	if now.Sub(s.burstAt) <= s.hold() {
		t = max(t, s.burst)
	}
	return max(min(t, s.Max), s.Min)
}

// hold is how long a burst keeps the target up after it was last seen.
func (s *Sizer) hold() time.Duration { return 10 * s.window() }

func (s *Sizer) window() time.Duration {
	if s.Window <= 0 {
		return DefaultWindow
	}
	return s.Window
}

// decay moves the rate to now. Instants before the last one (a clock
// read under contention) leave it as it is.
func (s *Sizer) decay(now time.Time) {
	if s.at.IsZero() {
		s.at = now
		return
	}
	dt := now.Sub(s.at)
	if dt <= 0 {
		return
	}
	s.rate *= math.Exp(-dt.Seconds() / s.window().Seconds())
	s.at = now
}
