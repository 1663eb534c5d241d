package wasm

import (
	"bytes"
	"io"
	"sync"
)

// capture is a guest's stdout or stderr: it keeps the first max bytes,
// copies every byte it keeps to live (if any) as it arrives, and calls over
// once when the stream goes past max. Writes past the cap are accepted and
// dropped, so the guest runs on to the point where the run is stopped
// rather than failing on a write error first.
type capture struct {
	max       int64
	live      io.Writer
	over      func()
	mu        sync.Mutex
	buf       bytes.Buffer
	truncated bool
}

func (c *capture) Write(p []byte) (int, error) {
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
	c.mu.Unlock()
	if c.live != nil && len(keep) > 0 {
		// A slow or broken live reader must not fail the guest's write;
		// the result still has the bytes.
		_, _ = c.live.Write(keep)
	}
	if overflow && c.over != nil {
		c.over()
	}
	return len(p), nil
}

func (c *capture) result() ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := bytes.Clone(c.buf.Bytes())
	if b == nil {
		b = []byte{}
	}
	return b, c.truncated
}
