package jupyter

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/sandboxd/sandboxd/internal/run"
)

// protocolVersion is the Jupyter messaging protocol version spoken.
const protocolVersion = "5.3"

// v1Protocol is the binary WebSocket subprotocol of jupyter_server 2 and
// @jupyterlab/services 7 (see encodeV1). Without it, messages are JSON
// text frames.
const v1Protocol = "v1.kernel.websocket.jupyter.org"

// header is a message's header. Unknown fields of a client's header are
// kept in the raw form a reply echoes as its parent_header.
type header struct {
	MsgID    string `json:"msg_id"`
	MsgType  string `json:"msg_type"`
	Session  string `json:"session"`
	Username string `json:"username"`
	Version  string `json:"version"`
	Date     string `json:"date"`
}

// message is one Jupyter message. Header, parent header, metadata and
// content stay raw: a parent header is echoed byte for byte, and content
// is decoded by the handler of its type.
type message struct {
	Channel      string            `json:"channel"`
	Header       json.RawMessage   `json:"header"`
	ParentHeader json.RawMessage   `json:"parent_header"`
	Metadata     json.RawMessage   `json:"metadata"`
	Content      json.RawMessage   `json:"content"`
	Buffers      []json.RawMessage `json:"buffers"`

	hdr header // Header decoded
}

// ErrMessage: a client's message that is not a Jupyter message.
var ErrMessage = errors.New("malformed Jupyter message")

// decodeJSON reads a message of the JSON protocol.
func decodeJSON(b []byte) (*message, error) {
	var m message
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMessage, err)
	}
	return m.check()
}

// check decodes the header and checks what every message needs.
func (m *message) check() (*message, error) {
	if len(m.Header) == 0 {
		return nil, fmt.Errorf("%w: no header", ErrMessage)
	}
	if err := json.Unmarshal(m.Header, &m.hdr); err != nil {
		return nil, fmt.Errorf("%w: header: %w", ErrMessage, err)
	}
	if m.hdr.MsgType == "" || m.hdr.MsgID == "" {
		return nil, fmt.Errorf("%w: the header has no msg_type or msg_id", ErrMessage)
	}
	switch m.Channel {
	case "shell", "control", "stdin", "iopub":
	case "":
		// jupyter_client's own JSON has no channel for shell messages.
		m.Channel = "shell"
	default:
		return nil, fmt.Errorf("%w: unknown channel %q", ErrMessage, run.Clip(m.Channel, run.MaxName))
	}
	return m, nil
}

// encodeJSON writes m for the JSON protocol.
func encodeJSON(m *message) ([]byte, error) { return json.Marshal(m) }

// The v1 binary protocol (jupyter_server's
// services/kernels/connection/base.py, serialize_msg_to_ws_v1): one
// binary frame per message,
//
//	n (uint64 LE) | offset[0..n-1] (uint64 LE each) | channel | header | parent_header | metadata | content | buffers...
//
// where offset[0] is where the channel starts (8*(n+1)), offset[i+1]
// where part i ends, and the parts are JSON but the channel (UTF-8) and
// the buffers (bytes).

// maxParts bounds the parts of a v1 frame: four JSON parts and the
// buffers of a comm message, which are few.
const maxParts = 4 + 64

// decodeV1 reads a message of the v1 protocol. Every offset is checked
// against the frame before it is used.
func decodeV1(b []byte) (*message, error) {
	if len(b) < 8 {
		return nil, fmt.Errorf("%w: a v1 frame of %d bytes has no offset count", ErrMessage, len(b))
	}
	n := binary.LittleEndian.Uint64(b)
	// channel start and end, then the end of each of 4 JSON parts at least.
	if n < 6 || n > maxParts+2 || uint64(len(b)) < 8*(n+1) {
		return nil, fmt.Errorf("%w: a v1 frame with %d offsets (want 6 to %d, and room for them)", ErrMessage, n, maxParts+2)
	}
	offs := make([]int, n)
	for i := range offs {
		o := binary.LittleEndian.Uint64(b[8*(i+1):])
		if o > uint64(len(b)) || (i == 0 && o != 8*(n+1)) || (i > 0 && int(o) < offs[i-1]) {
			return nil, fmt.Errorf("%w: v1 offset %d (%d) is out of order or past the frame's %d bytes", ErrMessage, i, o, len(b))
		}
		offs[i] = int(o)
	}
	part := func(i int) []byte { return b[offs[i]:offs[i+1]] }
	ch := part(0)
	if !utf8.Valid(ch) {
		return nil, fmt.Errorf("%w: the channel is not UTF-8", ErrMessage)
	}
	m := &message{Channel: string(ch), Header: part(1), ParentHeader: part(2), Metadata: part(3), Content: part(4)}
	for i := 5; i < len(offs)-1; i++ {
		// A buffer is kept as it is; no handler reads one.
		m.Buffers = append(m.Buffers, part(i))
	}
	for _, p := range []json.RawMessage{m.ParentHeader, m.Metadata, m.Content} {
		if len(p) > 0 && !json.Valid(p) {
			return nil, fmt.Errorf("%w: a v1 part is not JSON", ErrMessage)
		}
	}
	return m.check()
}

// encodeV1 writes m for the v1 protocol. Buffers are never sent.
func encodeV1(m *message) []byte {
	parts := [][]byte{[]byte(m.Channel), m.Header, orEmpty(m.ParentHeader), orEmpty(m.Metadata), orEmpty(m.Content)}
	n := len(parts) + 1
	size := 8 * (n + 1)
	for _, p := range parts {
		size += len(p)
	}
	b := make([]byte, 8*(n+1), size)
	binary.LittleEndian.PutUint64(b, uint64(n))
	off := 8 * (n + 1)
	binary.LittleEndian.PutUint64(b[8:], uint64(off))
	for i, p := range parts {
		off += len(p)
		binary.LittleEndian.PutUint64(b[8*(i+2):], uint64(off))
	}
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func orEmpty(r json.RawMessage) json.RawMessage {
	if len(r) == 0 {
		return json.RawMessage("{}")
	}
	return r
}

// newUUID is a random (version 4) UUID: kernel ids, message ids and
// kernel session ids are UUIDs in Jupyter.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// isUUID reports whether s is a UUID in its canonical text form.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'):
			return false
		}
	}
	return true
}

// isoTime is Jupyter's time format (%Y-%m-%dT%H:%M:%S.%fZ).
func isoTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000Z") }
