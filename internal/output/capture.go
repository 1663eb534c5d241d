// Package output captures a run's stdout or stderr: the first bytes up to
// a cap are kept for the result, copied live to a front end as they
// arrive, and passing the cap is reported once so the run can be stopped.
// Both backends use it. Past SpoolAt, a Capture given a spool.Dir keeps the
// bytes in a file without a name instead of the heap (package spool).
package output

import (
	"io"
	"sync"

	"github.com/sandboxd/sandboxd/internal/spool"
)

// SpoolAt is how much of a stream a Capture with a spool.Dir keeps in memory:
// past it, what was kept moves to a spool file and the rest follows it
// there. An answer waiting on a slow client then holds at most SpoolAt
// bytes of heap per stream however large its output (RATIONALE.md,
// "Output past 1 MiB waits on disk"). The default --max-output: a run
// that keeps to it never touches the disk.
const SpoolAt = 1 << 20

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
	// spool, when set, is where what is kept goes once it passes
	// SpoolAt: to file, and buf is dropped. A spool that fails (a full
	// disk) is given up, and what it had comes back into buf: the
	// output is never lost for the want of a place to wait.
	spool *spool.Dir
	file  *spool.File
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
	if w != nil && c.live == nil {
		if c.file != nil {
			_, _ = io.Copy(w, c.file.Reader())
		}
		if len(c.buf) > 0 {
			_, _ = w.Write(c.buf)
		}
	}
	c.live, c.max = w, max
}

// Write keeps what fits under the cap and passes it on live.
func (c *Capture) Write(p []byte) (int, error) {
	c.liveMu.Lock()
	c.mu.Lock()
	room := c.max - c.size()
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

// SetSpool makes what is kept past SpoolAt from now on move to sp (nil:
// stay in memory). Result then holds only what stayed in memory, and File
// hands over the rest.
func (c *Capture) SetSpool(sp *spool.Dir) {
	c.mu.Lock()
	c.spool = sp
	c.mu.Unlock()
}

// keep appends p to what is kept (it fits under max): to the spool file
// once there is one or buf would pass SpoolAt, else to buf, growing it by
// doubling up to max.
func (c *Capture) keep(p []byte) {
	if len(p) == 0 {
		return
	}
	if c.file == nil && c.spool != nil && len(c.buf)+len(p) > SpoolAt {
		if f, err := c.spool.Spool(c.buf); err == nil {
			c.file, c.buf = f, nil
		} else {
			c.spool = nil
		}
	}
	if c.file != nil {
		n, err := c.file.Write(p)
		if err == nil {
			return
		}
		c.unspool()
		p = p[n:]
	}
	need := len(c.buf) + len(p)
	if need > cap(c.buf) {
		grown := make([]byte, len(c.buf), min(max(2*cap(c.buf), need, 512), int(max(c.max, int64(need)))))
		copy(grown, c.buf)
		c.buf = grown
	}
	c.buf = append(c.buf, p...)
}

// Reset returns what Result would and starts the Capture afresh, for the
// next execution of a session: nothing kept, not truncated, no live writer,
// no overflow callback and no spool (a spool file not handed over is
// closed). The cap stays.
func (c *Capture) Reset() ([]byte, bool) {
	c.liveMu.Lock()
	defer c.liveMu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	b, truncated := c.take()
	c.file.Close()
	c.live, c.over, c.spool, c.file = nil, nil, nil, nil
	return b, truncated
}

// Result returns the kept bytes (never nil), not a copy, and whether the
// stream went past the cap. Once they moved to a spool file (SetSpool),
// the bytes are empty and File has them. The Capture keeps them too (a session's cell
// takes them with Reset after its kernel's sandbox has ended); the slice
// is capped at its length, so neither holder's append can reach the
// other's bytes, and neither writes into them.
func (c *Capture) Result() ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.kept(), c.truncated
}

// unspool gives up the spool file after a write to it failed: what it
// holds (the failed write's part included) comes back into buf, and the
// rest stays there. A file that cannot be read back loses its bytes: the
// stream is then as if cut there.
func (c *Capture) unspool() {
	b, err := c.file.Bytes()
	c.file.Close()
	c.file, c.spool = nil, nil
	if err != nil {
		c.truncated = true
		return
	}
	c.buf = b
}

// size is how much is kept.
func (c *Capture) size() int64 {
	n := int64(len(c.buf))
	if c.file != nil {
		n += c.file.Len()
	}
	return n
}

// File hands over the spool file what was kept past SpoolAt went to, or
// nil; the Capture forgets it, and the caller closes it.
func (c *Capture) File() *spool.File {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := c.file
	c.file = nil
	return f
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
