package jupyter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/coder/websocket"

	"github.com/sandboxd/sandboxd/internal/limits"
)

// readBudget bounds the bytes of client messages being read at once,
// across every connection. A connection may read a message of up to
// MaxMessage (a 16 MiB cell), and each holds the message whole while it
// reads it; without a bound across them, 256 connections of one client
// address could make the daemon hold 4 GiB. It is the WebSocket's side of
// the API's request body budget (--max-body-memory).
type readBudget struct {
	mu         sync.Mutex
	size, used int64
}

func (b *readBudget) take(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.size {
		return false
	}
	b.used += n
	return true
}

func (b *readBudget) give(n int64) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
}

// readChunk is how much of a message is reserved at a time.
const readChunk = 32 << 10

// errBudget: the budget had no room for the message being read.
var errBudget = errors.New("the daemon is reading as many kernel messages as it may hold at once")

// readMessage reads one message, reserving its bytes in b as they come;
// release gives them back. The connection's read limit bounds one
// message.
func readMessage(ctx context.Context, ws *websocket.Conn, b *readBudget) (typ websocket.MessageType, msg []byte, release func(), err error) {
	typ, r, err := ws.Reader(ctx)
	if err != nil {
		return 0, nil, nil, err
	}
	var buf bytes.Buffer
	held := int64(0)
	release = func() { b.give(held); held = 0 }
	for {
		if !b.take(readChunk) {
			release()
			return 0, nil, nil, fmt.Errorf("%w (%s, --max-body-memory); retry shortly", errBudget, limits.Bytes(b.size))
		}
		held += readChunk
		n, err := io.CopyN(&buf, r, readChunk)
		if err == io.EOF || (err == nil && n < readChunk) {
			return typ, buf.Bytes(), release, nil
		}
		if err != nil {
			release()
			return 0, nil, nil, err
		}
	}
}
