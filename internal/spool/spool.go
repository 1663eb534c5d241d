// Package spool keeps large outputs on disk while their answer waits: in
// files without a name, gone when closed or when the process dies. A leaf
// of the standard library, so that the run contract can name its types.
package spool

import (
	"errors"
	"fmt"
	"io"
	"os"
	"unicode/utf8"
)

// Dir is a directory where large outputs wait for their answer to
// be written, each in a file that has no name: opened with O_TMPFILE (or
// created and removed at once where the file system cannot), so it is
// gone from the disk when it is closed, or when the daemon dies.
type Dir struct {
	dir string
}

// New returns a Dir at dir, after making and closing one file there
// to check that it can.
func New(dir string) (*Dir, error) {
	s := &Dir{dir: dir}
	f, err := s.create()
	if err != nil {
		return nil, err
	}
	f.Close()
	return s, nil
}

// Path is the spool's directory.
func (s *Dir) Path() string { return s.dir }

// create opens a new file without a name in the spool's directory.
func (s *Dir) create() (*os.File, error) {
	f, err := openTmpfile(s.dir)
	if err == nil {
		return f, nil
	}
	// Not every file system has O_TMPFILE (overlayfs before Linux 6.6,
	// NFS): a file created and removed at once is as nameless, with a
	// moment in between when a crash leaves it behind.
	f, err2 := os.CreateTemp(s.dir, ".sandboxd-spool-*")
	if err2 != nil {
		return nil, fmt.Errorf("create a spool file: %w", errors.Join(err, err2))
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, fmt.Errorf("unlink a spool file: %w", err)
	}
	return f, nil
}

// File is a stream's output in a spool file: written by a Capture,
// then read, as often as wanted, by whoever answers with it. The holder
// closes it once the answer is written or abandoned. Its methods are not
// safe for concurrent use with its writes (the Capture hands it over when
// the run is done); Reader, Len, UTF8, Bytes and Close are safe with each
// other.
type File struct {
	f    *os.File
	n    int64
	text utf8Check
}

// Spool moves b to a new file of s.
func (s *Dir) Spool(b []byte) (*File, error) {
	f, err := s.create()
	if err != nil {
		return nil, err
	}
	sp := &File{f: f}
	if _, err := sp.Write(b); err != nil {
		sp.Close()
		return nil, err
	}
	return sp, nil
}

// Write appends p to the file. On error the first n bytes of p are in it.
func (s *File) Write(p []byte) (n int, err error) {
	n, err = s.f.Write(p)
	s.text.write(p[:n])
	s.n += int64(n)
	if err != nil {
		return n, fmt.Errorf("write to the spool: %w", err)
	}
	return n, nil
}

// Len is the number of bytes spooled.
func (s *File) Len() int64 { return s.n }

// UTF8 says whether the bytes are valid UTF-8 (as utf8.Valid would of all
// of them), known without reading them back.
func (s *File) UTF8() bool { return s.text.done() }

// Reader reads the bytes from the start. Readers are independent of each
// other (they read at offsets, not through the file's position).
func (s *File) Reader() io.Reader { return io.NewSectionReader(s.f, 0, s.n) }

// Bytes reads the bytes back into memory, for a caller that wants a slice.
func (s *File) Bytes() ([]byte, error) {
	b := make([]byte, s.n)
	if _, err := io.ReadFull(s.Reader(), b); err != nil {
		return nil, fmt.Errorf("read the spool: %w", err)
	}
	return b, nil
}

// Close closes the file, which frees its disk space (it has no name). A
// second Close, and Close of a nil File, do nothing.
func (s *File) Close() error {
	if s == nil {
		return nil
	}
	if err := s.f.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		return err
	}
	return nil
}

// utf8Check tells whether a stream that comes in parts is valid UTF-8, as
// utf8.Valid of the whole would: a rune cut between two parts is held back
// until the next. The zero value has seen nothing, which is valid.
type utf8Check struct {
	invalid bool
	// carry is the start of a rune cut at the end of the last part.
	carry    [utf8.UTFMax]byte
	carryLen int
}

func (c *utf8Check) write(p []byte) {
	if c.invalid || len(p) == 0 {
		return
	}
	if c.carryLen > 0 {
		var tmp [2 * utf8.UTFMax]byte
		n := copy(tmp[:], c.carry[:c.carryLen])
		n += copy(tmp[n:utf8.UTFMax], p)
		if !utf8.FullRune(tmp[:n]) {
			// p is too short to finish the rune: all of it is carried.
			c.carryLen = copy(c.carry[:], tmp[:n])
			return
		}
		r, size := utf8.DecodeRune(tmp[:n])
		if r == utf8.RuneError && size == 1 {
			c.invalid = true
			return
		}
		p = p[size-c.carryLen:]
		c.carryLen = 0
	}
	// Hold back the start of a rune cut at the end: the last rune start
	// within the last UTFMax-1 bytes, if it begins no whole rune.
	for j := len(p) - 1; j >= 0 && j > len(p)-utf8.UTFMax; j-- {
		if utf8.RuneStart(p[j]) {
			if !utf8.FullRune(p[j:]) {
				c.carryLen = copy(c.carry[:], p[j:])
				p = p[:j]
			}
			break
		}
	}
	c.invalid = !utf8.Valid(p)
}

// done says whether everything written was valid UTF-8: a rune still
// incomplete at the end is not.
func (c *utf8Check) done() bool { return !c.invalid && c.carryLen == 0 }
