// Package output captures a run's stdout or stderr: the first bytes up to
// a cap are kept for the result, copied live to a front end as they
// arrive, and passing the cap is reported once so the run can be stopped.
// Both backends use it.
package output

import (
	"bytes"
	"io"
	"sync"
)

// Capture is one output stream of a run. It is safe for concurrent use.
// Writes past the cap are accepted and dropped, so the writer runs on to
// the point where the run is stopped instead of failing on a write first.
type Capture struct {
	// liveMu is held across a write to live, so that once SetLive or
	// Reset returns, no write to the writer they replaced is under way.
	liveMu    sync.Mutex
	mu        sync.Mutex
	max       int64
	live      io.Writer
	over      func()
	buf       bytes.Buffer
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
	if w != nil && c.live == nil && c.buf.Len() > 0 {
		_, _ = w.Write(c.buf.Bytes())
	}
	c.live, c.max = w, max
}

// Write keeps what fits under the cap and passes it on live.
func (c *Capture) Write(p []byte) (int, error) {
	c.liveMu.Lock()
	c.mu.Lock()
	room := c.max - int64(c.buf.Len())
	keep := p
	overflow := false
	if int64(len(p)) > room {
		keep = p[:max(room, 0)]
		overflow = !c.truncated
		c.truncated = true
	}
	c.buf.Write(keep)
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

// Reset returns what Result would and starts the Capture afresh, for the
// next execution of a session: nothing kept, not truncated, no live writer
// and no overflow callback. The cap stays.
func (c *Capture) Reset() ([]byte, bool) {
	c.liveMu.Lock()
	defer c.liveMu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	b := bytes.Clone(c.buf.Bytes())
	if b == nil {
		b = []byte{}
	}
	truncated := c.truncated
	c.buf.Reset()
	c.truncated, c.live, c.over = false, nil, nil
	return b, truncated
}

// Result returns a copy of the kept bytes (never nil) and whether the
// stream went past the cap.
func (c *Capture) Result() ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := bytes.Clone(c.buf.Bytes())
	if b == nil {
		b = []byte{}
	}
	return b, c.truncated
}
