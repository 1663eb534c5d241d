// Package output captures a run's stdout or stderr: the first bytes up to
// a cap are kept for the result, copied live to a front end as they
// arrive, and passing the cap is reported once so the run can be stopped.
// Both backends use it.
package output

import (
	"io"
	"sync"
)

// Capture is one output stream of a run. It is safe for concurrent use.
// Writes past the cap are accepted and dropped, so the writer runs on to
// the point where the run is stopped instead of failing on a write first.
type Capture struct {
	// liveMu is held across a write to live, so that once SetLive or
	// Reset returns, no write to the writer they replaced is under way.
	liveMu sync.Mutex
	mu     sync.Mutex
	max    int64
	live   io.Writer
	over   func()
	// buf is what is kept. It grows as bytes.Buffer would, doubling, but
	// never past max, and Result hands it over rather than copying it: a
	// run's 64 MiB of output costs 64 MiB, not up to 128 for a doubled
	// buffer and 64 more for the copy.
	buf       []byte
	truncated bool
}

// New returns a Capture keeping max bytes, copying them to live (if not
// nil) and calling over (if not nil) once when the stream passes max.
func New(max int64, live io.Writer, over func()) *Capture {
	return &Capture{max: max, live: live, over: over}
}

// Max is the cap.
func (c *Capture) Max() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.max
}

// SetOver sets what is called when the stream passes its cap.
func (c *Capture) SetOver(f func()) {
	c.mu.Lock()
	c.over = f
	c.mu.Unlock()
}

// SetLive sets where kept bytes go live from now on, and the cap. Bytes
// kept before are written to w first, so a live reader misses nothing.
func (c *Capture) SetLive(w io.Writer, max int64) {
	c.liveMu.Lock()
	defer c.liveMu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if w != nil && c.live == nil && len(c.buf) > 0 {
		_, _ = w.Write(c.buf)
	}
	c.live, c.max = w, max
}

// Write keeps what fits under the cap and passes it on live.
func (c *Capture) Write(p []byte) (int, error) {
	c.liveMu.Lock()
	c.mu.Lock()
	room := c.max - int64(len(c.buf))
	keep := p
	overflow := false
	if int64(len(p)) > room {
		keep = p[:max(room, 0)]
		overflow = !c.truncated
		c.truncated = true
	}
	c.keep(keep)
	live, over := c.live, c.over
	c.mu.Unlock()
	if live != nil && len(keep) > 0 {
		// A slow or broken live reader must not stall or fail the run;
		// its errors are the front end's to see, the result has the bytes.
		_, _ = live.Write(keep)
	}
	c.liveMu.Unlock()
	if overflow && over != nil {
		over()
	}
	return len(p), nil
}

// keep appends p to buf (it fits under max), growing buf by doubling up
// to max.
func (c *Capture) keep(p []byte) {
	need := len(c.buf) + len(p)
	if need > cap(c.buf) {
		grown := make([]byte, len(c.buf), min(max(2*cap(c.buf), need, 512), int(max(c.max, int64(need)))))
		copy(grown, c.buf)
		c.buf = grown
	}
	c.buf = append(c.buf, p...)
}

// Reset returns what Result would and starts the Capture afresh, for the
// next execution of a session: nothing kept, not truncated, no live writer
// and no overflow callback. The cap stays.
func (c *Capture) Reset() ([]byte, bool) {
	c.liveMu.Lock()
	defer c.liveMu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	b, truncated := c.take()
	c.live, c.over = nil, nil
	return b, truncated
}

// Result returns the kept bytes (never nil), not a copy, and whether the
// stream went past the cap. The Capture keeps them too (a session's cell
// takes them with Reset after its kernel's sandbox has ended); the slice
// is capped at its length, so neither holder's append can reach the
// other's bytes, and neither writes into them.
func (c *Capture) Result() ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.kept(), c.truncated
}

// take returns what is kept and starts afresh.
func (c *Capture) take() ([]byte, bool) {
	b, truncated := c.kept(), c.truncated
	c.buf, c.truncated = nil, false
	return b, truncated
}

func (c *Capture) kept() []byte {
	if c.buf == nil {
		return []byte{}
	}
	return c.buf[:len(c.buf):len(c.buf)]
}
