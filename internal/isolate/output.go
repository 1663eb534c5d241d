package isolate

import (
	"bytes"
	"io"
	"sync"
)

// capture drains one output pipe of a run: it keeps the first max bytes,
// copies every byte it keeps to live (if any) as it arrives, and signals
// over once when the stream goes past max. It keeps reading (and discarding)
// after that, so the writer never blocks on a full pipe while the run is
// being killed.
type capture struct {
	max       int64
	live      io.Writer
	over      func()
	mu        sync.Mutex
	buf       bytes.Buffer
	truncated bool
}

// setLive sets where kept bytes go live from now on, and the cap. Bytes
// kept before are written to w first, so a live reader misses nothing.
func (c *capture) setLive(w io.Writer, max int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if w != nil && c.live == nil && c.buf.Len() > 0 {
		_, _ = w.Write(c.buf.Bytes())
	}
	c.live, c.max = w, max
}

func (c *capture) drain(r io.Reader) error {
	chunk := make([]byte, 32<<10)
	for {
		n, err := r.Read(chunk)
		if n > 0 {
			c.write(chunk[:n])
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (c *capture) write(p []byte) {
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
	live := c.live
	c.mu.Unlock()
	if live != nil && len(keep) > 0 {
		// A slow or broken live reader must not stall the run; its errors
		// are the front end's to see, the result still has the bytes.
		_, _ = live.Write(keep)
	}
	if overflow && c.over != nil {
		c.over()
	}
}

func (c *capture) result() ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.buf.Bytes()
	if b == nil {
		b = []byte{}
	}
	return b, c.truncated
}
