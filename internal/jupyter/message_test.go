package jupyter

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"testing"
)

func TestV1RoundTrip(t *testing.T) {
	m := &message{Channel: "shell", Header: json.RawMessage(`{"msg_id":"a","msg_type":"execute_request","session":"s","username":"u","version":"5.3","date":""}`),
		ParentHeader: json.RawMessage(`{}`), Metadata: json.RawMessage(`{}`), Content: json.RawMessage(`{"code":"1+1"}`)}
	got, err := decodeV1(encodeV1(m))
	if err != nil {
		t.Fatal(err)
	}
	if got.Channel != "shell" || got.hdr.MsgType != "execute_request" || string(got.Content) != `{"code":"1+1"}` || len(got.Buffers) != 0 {
		t.Fatalf("round trip: %+v", got)
	}
}

// v1Frame builds a frame from its parts, with offsets as given (nil: the
// right ones).
func v1Frame(parts [][]byte, offs []uint64) []byte {
	n := len(parts) + 1
	if offs == nil {
		off := uint64(8 * (n + 1))
		offs = []uint64{off}
		for _, p := range parts {
			off += uint64(len(p))
			offs = append(offs, off)
		}
	}
	var b bytes.Buffer
	_ = binary.Write(&b, binary.LittleEndian, uint64(len(offs)))
	for _, o := range offs {
		_ = binary.Write(&b, binary.LittleEndian, o)
	}
	for _, p := range parts {
		b.Write(p)
	}
	return b.Bytes()
}

func TestDecodeV1Refuses(t *testing.T) {
	h := []byte(`{"msg_id":"a","msg_type":"kernel_info_request"}`)
	ok := [][]byte{[]byte("shell"), h, []byte("{}"), []byte("{}"), []byte("{}")}
	if _, err := decodeV1(v1Frame(ok, nil)); err != nil {
		t.Fatalf("a good frame: %v", err)
	}
	huge := make([]byte, 8)
	binary.LittleEndian.PutUint64(huge, 1<<62)
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"empty", nil},
		{"count only", v1Frame(nil, []uint64{})},
		{"a huge count", huge},
		{"too few parts", v1Frame(ok[:3], nil)},
		{"offset past the end", v1Frame(ok, []uint64{56, 61, 108, 110, 112, 9999})},
		{"offsets out of order", v1Frame(ok, []uint64{56, 61, 50, 110, 112, 114})},
		{"first offset wrong", v1Frame(ok, []uint64{48, 61, 108, 110, 112, 114})},
		{"content not JSON", v1Frame([][]byte{[]byte("shell"), h, []byte("{}"), []byte("{}"), []byte("{")}, nil)},
		{"no msg_type", v1Frame([][]byte{[]byte("shell"), []byte(`{"msg_id":"a"}`), []byte("{}"), []byte("{}"), []byte("{}")}, nil)},
		{"unknown channel", v1Frame([][]byte{[]byte("sell"), h, []byte("{}"), []byte("{}"), []byte("{}")}, nil)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := decodeV1(tc.frame); !errors.Is(err, ErrMessage) {
				t.Fatalf("decodeV1 = %v, want ErrMessage", err)
			}
		})
	}
}

func TestDecodeJSON(t *testing.T) {
	m, err := decodeJSON([]byte(`{"header":{"msg_id":"a","msg_type":"kernel_info_request","x":1},"parent_header":{},"metadata":{},"content":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	// No channel is shell; the header is kept as sent, to be echoed.
	if m.Channel != "shell" || string(m.Header) != `{"msg_id":"a","msg_type":"kernel_info_request","x":1}` {
		t.Fatalf("got %+v", m)
	}
	for _, bad := range []string{``, `[]`, `{"header":{}}`, `{"header":"x"}`, `{"channel":"x","header":{"msg_id":"a","msg_type":"b"}}`} {
		if _, err := decodeJSON([]byte(bad)); !errors.Is(err, ErrMessage) {
			t.Errorf("decodeJSON(%q) = %v, want ErrMessage", bad, err)
		}
	}
}

func TestUUID(t *testing.T) {
	a, b := newUUID(), newUUID()
	if !isUUID(a) || a == b || a[14] != '4' {
		t.Fatalf("newUUID: %q, %q", a, b)
	}
	for _, s := range []string{"", "x", "0123456789abcdef0123456789abcdef0123", "01234567-89ab-cdef-0123-456789abcdeg"} {
		if isUUID(s) {
			t.Errorf("isUUID(%q)", s)
		}
	}
}

func TestStreamWriterKeepsCharactersWhole(t *testing.T) {
	var got []string
	w := &streamWriter{}
	w.sendFn = func(s string) { got = append(got, s) }
	text := []byte("añb€c")
	for _, b := range text {
		_, _ = w.Write([]byte{b})
	}
	w.flush()
	joined := ""
	for _, s := range got {
		joined += s
	}
	if joined != "añb€c" {
		t.Fatalf("streamed %q, want %q", got, "añb€c")
	}
	got = nil
	_, _ = w.Write([]byte{0xe2, 0x82})
	w.flush()
	if len(got) != 1 || got[0] != "\uFFFD" {
		t.Fatalf("a cut sequence at the end: %q", got)
	}
}

func FuzzDecode(f *testing.F) {
	h := []byte(`{"msg_id":"a","msg_type":"kernel_info_request"}`)
	f.Add(v1Frame([][]byte{[]byte("shell"), h, []byte("{}"), []byte("{}"), []byte("{}")}, nil))
	f.Add([]byte(`{"header":{"msg_id":"a","msg_type":"b"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, dec := range []func([]byte) (*message, error){decodeV1, decodeJSON} {
			m, err := dec(b)
			if err == nil && (m.hdr.MsgType == "" || m.Channel == "") {
				t.Fatalf("accepted a message without a type or channel: %+v", m)
			}
		}
	})
}
