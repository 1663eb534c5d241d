package output

import (
	"bytes"
	"io"
	"testing"
)

// chunked reads its chunks one per Read, as a pipe would deliver them.
type chunked struct{ chunks [][]byte }

func (c *chunked) Read(p []byte) (int, error) {
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	c.chunks = c.chunks[1:]
	return n, nil
}

func TestMarksCutAtEverySplit(t *testing.T) {
	mark := []byte("\x00MARK-0123456789")
	stream := append(append([]byte("before\x00MA"), mark...), "after"...)
	for split := 0; split <= len(stream); split++ {
		var m Marks
		var out bytes.Buffer
		var atCut string
		m.Arm(mark, func() { atCut = out.String() })
		r := &chunked{chunks: [][]byte{stream[:split], stream[split:]}}
		if err := m.Copy(&out, r); err != nil {
			t.Fatal(err)
		}
		if out.String() != "before\x00MAafter" || atCut != "before\x00MA" {
			t.Errorf("split %d: copied %q, %q at the cut", split, out.String(), atCut)
		}
	}
}

func TestMarksUnarmedPassesEverything(t *testing.T) {
	var m Marks
	var out bytes.Buffer
	m.Arm([]byte("zz"), func() { t.Error("a disarmed mark fired") })
	m.Disarm()
	if err := m.Copy(&out, &chunked{chunks: [][]byte{[]byte("a z"), []byte("z b")}}); err != nil {
		t.Fatal(err)
	}
	if out.String() != "a zz b" {
		t.Errorf("copied %q", out.String())
	}
}

func TestMarksHeldBytesFlushAtEOF(t *testing.T) {
	var m Marks
	var out bytes.Buffer
	m.Arm([]byte("xyz"), func() { t.Error("fired without the whole mark") })
	if err := m.Copy(&out, &chunked{chunks: [][]byte{[]byte("abcxy")}}); err != nil {
		t.Fatal(err)
	}
	if out.String() != "abcxy" {
		t.Errorf("copied %q", out.String())
	}
}

func TestCaptureReset(t *testing.T) {
	c := New(3, nil, nil)
	c.Write([]byte("abcd"))
	b, tr := c.Reset()
	if string(b) != "abc" || !tr {
		t.Errorf("reset returned %q %v", b, tr)
	}
	c.Write([]byte("x"))
	b, tr = c.Result()
	if string(b) != "x" || tr {
		t.Errorf("after reset %q %v", b, tr)
	}
}
