package admission

import (
	"net/netip"
	"sync"
	"time"
)

// Refusals slows down a client the daemon keeps refusing. Every refusal
// costs the daemon something (a connection, a parse, a body decoded to
// find it bad), and a client that sends requests it knows will be refused
// can make the daemon spend a core on nothing but saying no: a loop of
// runs whose file lies 2000 directories deep got 14 000 answers of 400 in
// 20 s, and the tenant next to it paid for them in latency.
//
// Each client has a token bucket of Burst refusals, refilled at Rate a
// second. A refusal takes one token, and may take the bucket below zero
// (requests already past the check when the bucket ran out still count).
// A request of a client whose bucket holds less than one token waits,
// before anything of it is read, until the bucket holds one again. A
// client that is not refused never waits, however many requests it sends;
// one that makes a mistake now and then never notices; one that is
// refused faster than Rate a second is held to Rate, and its waiting
// requests cost a goroutine each and no CPU.
//
// Not golang.org/x/time/rate: there a request takes its token when it
// is let through, whether or not it is then refused; here only what is
// refused is charged, after the fact, so that a client that has stopped
// erring gets its full speed back as soon as its bucket refills.
//
// The zero value is not usable; call NewRefusals. Safe for concurrent
// use.
type Refusals struct {
	rate, burst float64
	now         func() time.Time

	mu sync.Mutex
	by map[string]*debt
	// sweepAt is the map's size at which it is next swept of clients
	// whose buckets are full again.
	sweepAt int
}

// debt is one client's bucket: left tokens at time at; slowed while the
// client has run out since its bucket was last full.
type debt struct {
	left   float64
	at     time.Time
	slowed bool
}

// minSweep is the least number of clients in the map before it is swept.
const minSweep = 1024

// NewRefusals returns a limiter that lets a client be refused burst times
// at once and rate times a second after that (see Refusals). now is the
// clock (nil: time.Now).
func NewRefusals(rate float64, burst int, now func() time.Time) *Refusals {
	if now == nil {
		now = time.Now
	}
	return &Refusals{rate: rate, burst: float64(max(burst, 1)), now: now, by: map[string]*debt{}, sweepAt: minSweep}
}

// level is d's tokens at now.
func (f *Refusals) level(d *debt, now time.Time) float64 {
	return min(f.burst, d.left+now.Sub(d.at).Seconds()*f.rate)
}

// Charge counts one refusal against client. It reports whether the client
// has just run out: its bucket holds no token now, for the first time
// since it was last full (the moment to say so once in the log, not at
// every refusal of a client held at the rate).
func (f *Refusals) Charge(client string) (ranOut bool) {
	now := f.now()
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.by[client]
	if d == nil {
		if len(f.by) >= f.sweepAt {
			f.sweep(now)
		}
		d = &debt{left: f.burst, at: now}
		f.by[client] = d
	}
	lvl := f.level(d, now)
	if lvl >= f.burst {
		d.slowed = false
	}
	d.left, d.at = lvl-1, now
	if d.left < 1 && !d.slowed {
		d.slowed = true
		return true
	}
	return false
}

// sweep forgets the clients whose buckets are full again: they are as
// if never refused. It keeps the map as large as the clients refused in
// the last Burst/Rate seconds, and its cost amortized, by sweeping next
// when the map has doubled.
func (f *Refusals) sweep(now time.Time) {
	for k, d := range f.by {
		if f.level(d, now) >= f.burst {
			delete(f.by, k)
		}
	}
	f.sweepAt = max(minSweep, 2*len(f.by))
}

// Delay is how long a request of client must wait before it is served:
// until its bucket holds a token again; 0 for a client with a token left.
func (f *Refusals) Delay(client string) time.Duration {
	now := f.now()
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.by[client]
	if d == nil {
		return 0
	}
	lvl := f.level(d, now)
	if lvl >= 1 {
		return 0
	}
	return time.Duration((1 - lvl) / f.rate * float64(time.Second))
}

// ClientKey is what counts as one client address: the address without
// an IPv4-in-IPv6 wrapping, or for IPv6 its /64, which one client (one
// host, one LAN) is routinely given whole.
func ClientKey(ip netip.Addr) netip.Addr {
	ip = ip.Unmap()
	if ip.Is6() && !ip.IsLoopback() {
		if p, err := ip.Prefix(64); err == nil {
			return p.Addr()
		}
	}
	return ip
}
