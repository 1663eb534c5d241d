package output

import (
	"bytes"
	"io"
	"sync"
)

// Marks cuts a stream at points its reader's side chooses. A session runs
// execution after execution in one program, and the output of each must
// end up with that execution: the program's answer and its output travel
// through different pipes, so an answer can arrive while the last bytes of
// output still sit in the output pipe. The reader's side therefore writes a
// marker of its own into the output pipe once the answer is in: the pipe
// is FIFO, so when Copy meets the marker every byte written before it has
// been copied. The marker is random and never leaves Copy.
//
// The zero value is ready to use.
type Marks struct {
	mu   sync.Mutex
	mark []byte
	at   func()
}

// Arm makes Copy watch for mark, cut it out of the stream and call at,
// in order: after the bytes before the mark are written, before the bytes
// after it. An armed mark replaces an earlier one.
func (m *Marks) Arm(mark []byte, at func()) {
	m.mu.Lock()
	m.mark, m.at = bytes.Clone(mark), at
	m.mu.Unlock()
}

// Disarm stops watching for the armed mark, if any.
func (m *Marks) Disarm() {
	m.mu.Lock()
	m.mark, m.at = nil, nil
	m.mu.Unlock()
}

// Copy copies r to w until EOF or a read error, cutting out armed marks.
// While a mark is armed, a chunk's last bytes that could be its beginning
// are held back until the next read tells; unarmed, nothing is held.
//
// A stream that is quiet (a session's between cells, most of its life)
// waits in a read of a few hundred bytes; one that fills that read
// borrows a chunk to read into until a read comes back short. So a
// thousand idle sessions do not hold a chunk each.
func (m *Marks) Copy(w io.Writer, r io.Reader) error {
	small := make([]byte, smallRead)
	var chunk *[]byte
	defer func() {
		if chunk != nil {
			chunks.Put(chunk)
		}
	}()
	var held []byte
	for {
		buf := small
		if chunk != nil {
			buf = *chunk
		}
		n, err := r.Read(buf)
		data := buf[:n]
		if len(held) > 0 {
			data = append(held, data...)
			held = nil
		}
		for len(data) > 0 {
			m.mu.Lock()
			mark, at := m.mark, m.at
			m.mu.Unlock()
			if mark == nil {
				_, _ = w.Write(data)
				break
			}
			if i := bytes.Index(data, mark); i >= 0 {
				_, _ = w.Write(data[:i])
				m.mu.Lock()
				if bytes.Equal(m.mark, mark) {
					m.mark, m.at = nil, nil
				}
				m.mu.Unlock()
				at()
				data = data[i+len(mark):]
				continue
			}
			keep := partialSuffix(data, mark)
			_, _ = w.Write(data[:len(data)-keep])
			held = append([]byte(nil), data[len(data)-keep:]...)
			break
		}
		// buf's bytes are written out (an io.Writer keeps none of
		// them; held is a copy): it can change now.
		switch {
		case chunk == nil && n == len(buf):
			chunk = chunks.Get().(*[]byte)
		case chunk != nil && n < len(buf):
			chunks.Put(chunk)
			chunk = nil
		}
		if err != nil {
			if len(held) > 0 {
				_, _ = w.Write(held)
			}
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
}

// smallRead is a quiet stream's read; chunks are a busy one's.
const smallRead = 512

var chunks = sync.Pool{New: func() any {
	b := make([]byte, 32<<10)
	return &b
}}

// partialSuffix is the length of the longest end of data that is a proper
// beginning of mark.
func partialSuffix(data, mark []byte) int {
	for k := min(len(mark)-1, len(data)); k > 0; k-- {
		if bytes.Equal(data[len(data)-k:], mark[:k]) {
			return k
		}
	}
	return 0
}
