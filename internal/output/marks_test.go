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

// sized delivers data in reads of at most the sizes given in turn (then
// of whatever is asked), keeping what a read had no room for, as a pipe
// does.
type sized struct {
	data  []byte
	sizes []int
}

func (s *sized) Read(p []byte) (int, error) {
	if len(s.data) == 0 {
		return 0, io.EOF
	}
	lim := len(p)
	if len(s.sizes) > 0 {
		lim, s.sizes = min(lim, s.sizes[0]), s.sizes[1:]
	}
	n := copy(p[:lim], s.data)
	s.data = s.data[n:]
	return n, nil
}

// TestMarksAcrossReadSizes: a stream that goes from quiet to busy and
// back (reads that fill the small buffer, then the borrowed chunk, then
// come back short) is copied whole, its marks cut wherever the switches
// fall, and a borrowed chunk's bytes are never those of another stream.
func TestMarksAcrossReadSizes(t *testing.T) {
	mark := []byte("\x00MARK-0123456789")
	var stream, want bytes.Buffer
	for i := range 40 {
		line := bytes.Repeat([]byte{'a' + byte(i%26)}, 300+i*997)
		stream.Write(line)
		want.Write(line)
		if i%7 == 3 {
			stream.Write(mark)
		}
	}
	big := 1 << 20 // as much as asked
	sizes := []int{smallRead, big, big, 100, smallRead, big, 1, smallRead, 3, big, big, big, 17}
	for shift := range 64 {
		var m Marks
		var out bytes.Buffer
		cuts := 0
		var arm func()
		arm = func() { cuts++; m.Arm(mark, arm) }
		m.Arm(mark, arm)
		s := &sized{data: bytes.Clone(stream.Bytes()), sizes: append([]int{shift * 37}, sizes...)}
		// Another stream borrowing chunks at the same time scribbles on
		// any it gets.
		done := make(chan struct{})
		go func() {
			defer close(done)
			for range 100 {
				c := chunks.Get().(*[]byte)
				for i := range *c {
					(*c)[i] = '#'
				}
				chunks.Put(c)
			}
		}()
		if err := m.Copy(&out, s); err != nil {
			t.Fatal(err)
		}
		<-done
		if !bytes.Equal(out.Bytes(), want.Bytes()) {
			t.Fatalf("shift %d: copied %d bytes unlike the %d written", shift, out.Len(), want.Len())
		}
		if cuts != 6 {
			t.Fatalf("shift %d: %d cuts, want 6", shift, cuts)
		}
	}
}
