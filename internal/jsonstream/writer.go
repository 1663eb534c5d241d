// Package jsonstream writes JSON to an io.Writer as it is encoded, long
// strings and byte slices a chunk at a time, so that no encoded copy of a
// large value is ever held whole: the bytes are those encoding/json
// writes for the same value.
package jsonstream

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"unicode/utf8"
)

// flushAt is how much encoded output a Writer gathers before it hands it
// on: large enough that a write is worth its system call, small enough
// that a large value costs the daemon nothing to speak of. A part of a
// string is escaped partChunk bytes at a time (at most 6 output bytes per
// input byte: "<" is \u003c), so the buffer never grows past
// flushAt+6*partChunk.
const (
	flushAt   = 32 << 10
	partChunk = 4 << 10
	// b64Chunk is a multiple of 3, so that only the last chunk pads.
	b64Chunk = 3 << 10
	// readChunk is how much of a value read from an io.Reader is held at
	// once: a multiple of b64Chunk, so that base64 read in parts pads only
	// at its end.
	readChunk = 16 * b64Chunk
)

// Value is a value that writes itself to a Writer: a type with large
// fields implements it, and Encode then streams it instead of marshalling
// it whole.
type Value interface {
	EncodeJSON(w *Writer)
}

// Encode writes v and a newline to w as json.Encoder.Encode does: v is
// streamed when it is a Value, else marshalled whole (small values).
func Encode(w io.Writer, v any) error {
	jw := NewWriter(w)
	jw.Value(v)
	jw.raw('\n')
	return jw.Flush()
}

// Marshal is v's encoding as one slice: for a MarshalJSON method (small
// values, clients) and tests.
func Marshal(v Value) ([]byte, error) {
	var b bytes.Buffer
	w := NewWriter(&b)
	v.EncodeJSON(w)
	if err := w.Flush(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Writer writes one JSON text. Its methods record the first error (of the
// underlying writer, or of marshalling a value) and do nothing after it;
// Flush returns it. The caller calls them in an order that makes valid
// JSON: Key only in an object, once before each member's value.
type Writer struct {
	w   io.Writer
	buf []byte
	err error
	// open is the containers entered, innermost last.
	open []container
	// carry is the start of a rune cut at the end of a string's part,
	// waiting for the rest from the next part.
	carry []byte
	// scratch holds what a value read from an io.Reader gives, readChunk
	// at a time; made on first use.
	scratch []byte
}

type container struct {
	array bool
	// empty until the first member or element is written.
	empty bool
}

// NewWriter returns a Writer to w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w, buf: make([]byte, 0, flushAt+6*partChunk)}
}

// Flush hands on what is buffered and returns the first error met.
func (w *Writer) Flush() error {
	if w.err == nil && len(w.buf) > 0 {
		_, w.err = w.w.Write(w.buf)
	}
	w.buf = w.buf[:0]
	return w.err
}

// BeginObject starts an object, EndObject ends it.
func (w *Writer) BeginObject() { w.begin(false, '{') }

// EndObject ends the innermost object.
func (w *Writer) EndObject() { w.end('}') }

// BeginArray starts an array, EndArray ends it.
func (w *Writer) BeginArray() { w.begin(true, '[') }

// EndArray ends the innermost array.
func (w *Writer) EndArray() { w.end(']') }

func (w *Writer) begin(array bool, delim byte) {
	w.element()
	w.raw(delim)
	w.open = append(w.open, container{array: array, empty: true})
}

func (w *Writer) end(delim byte) {
	w.open = w.open[:len(w.open)-1]
	w.raw(delim)
}

// Key starts an object's member: a comma if one came before, the name and
// a colon. Its value follows.
func (w *Writer) Key(name string) {
	top := &w.open[len(w.open)-1]
	if !top.empty {
		w.raw(',')
	}
	top.empty = false
	w.quoted(name)
	w.raw(':')
}

// element writes the comma before an array's element, after its first.
func (w *Writer) element() {
	if len(w.open) == 0 {
		return
	}
	if top := &w.open[len(w.open)-1]; top.array {
		if !top.empty {
			w.raw(',')
		}
		top.empty = false
	}
}

// Value writes v: itself when it is a Value, else as json.Marshal gives
// it. It is for small values (numbers, names, a short message) and for
// Values.
func (w *Writer) Value(v any) {
	if w.err != nil {
		return
	}
	if sv, ok := v.(Value); ok {
		sv.EncodeJSON(w)
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		w.err = fmt.Errorf("encode %T: %w", v, err)
		return
	}
	w.element()
	w.buf = append(w.buf, b...)
	w.maybeFlush()
}

// Bytes writes b as a JSON string, as json.Marshal writes string(b):
// invalid UTF-8 as U+FFFD, and <, >, &, U+2028 and U+2029 escaped.
func (w *Writer) Bytes(b []byte) {
	w.BeginString()
	w.StringPart(b)
	w.EndString()
}

// String writes s as a JSON string, as json.Marshal writes it.
func (w *Writer) String(s string) {
	w.element()
	w.quoted(s)
}

// quoted writes s as a JSON string, a chunk at a time (a member's name
// too: a map's keys may be long).
func (w *Writer) quoted(s string) {
	w.raw('"')
	w.carry = w.carry[:0]
	stringPart(w, s)
	w.EndString()
}

// BeginString starts a string whose contents come in parts (StringPart),
// as if they were one: a rune cut between two parts is written whole.
func (w *Writer) BeginString() {
	w.element()
	w.raw('"')
	w.carry = w.carry[:0]
}

// StringPart writes the next part of the string begun.
func (w *Writer) StringPart(b []byte) { stringPart(w, b) }

// StringPartFrom writes what r gives, to its EOF, as the next parts of
// the string begun: a value too large to hold (a spooled output) is read
// a chunk at a time. A read error is the Writer's error.
func (w *Writer) StringPartFrom(r io.Reader) { w.readParts(r, w.StringPart) }

// StringFrom writes what r gives as one JSON string, as Bytes writes the
// same bytes.
func (w *Writer) StringFrom(r io.Reader) {
	w.BeginString()
	w.StringPartFrom(r)
	w.EndString()
}

// EndString ends the string: a rune left incomplete is invalid UTF-8.
func (w *Writer) EndString() {
	if len(w.carry) > 0 {
		w.buf = appendEscaped(w.buf, w.carry)
		w.carry = w.carry[:0]
	}
	w.raw('"')
}

// Base64 writes b as a JSON string in standard base64 with padding, as
// json.Marshal writes a []byte.
func (w *Writer) Base64(b []byte) {
	w.element()
	w.raw('"')
	w.base64Part(b)
	w.raw('"')
}

// Base64From writes what r gives, to its EOF, as Base64 writes the same
// bytes. A read error is the Writer's error.
func (w *Writer) Base64From(r io.Reader) {
	w.element()
	w.raw('"')
	w.readParts(r, w.base64Part)
	w.raw('"')
}

// base64Part encodes b, whose length is a multiple of 3 unless it is the
// last part, a chunk at a time.
func (w *Writer) base64Part(b []byte) {
	for len(b) > 0 && w.err == nil {
		n := min(len(b), b64Chunk)
		w.buf = base64.StdEncoding.AppendEncode(w.buf, b[:n])
		b = b[n:]
		w.maybeFlush()
	}
}

// readParts hands part what r gives, readChunk bytes at a time (fewer
// only at EOF), until EOF, a read error (which becomes the Writer's) or
// an error of the Writer's.
func (w *Writer) readParts(r io.Reader, part func([]byte)) {
	if w.scratch == nil {
		w.scratch = make([]byte, readChunk)
	}
	for w.err == nil {
		n, err := io.ReadFull(r, w.scratch)
		part(w.scratch[:n])
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			return
		case err != nil:
			w.err = fmt.Errorf("read a value to encode: %w", err)
			return
		}
	}
}

// stringPart escapes s into w's buffer a chunk at a time, holding back a
// rune that s ends in the middle of until the next part (or EndString).
func stringPart[T []byte | string](w *Writer, s T) {
	for len(w.carry) > 0 && len(s) > 0 {
		s = finishCarry(w, s)
	}
	// Hold back the start of a rune cut at the end: the last rune start
	// within the last UTFMax-1 bytes, if it begins no whole rune (an
	// invalid sequence counts as whole: it is U+FFFD whatever follows).
	for j := len(s) - 1; j >= 0 && j > len(s)-utf8.UTFMax; j-- {
		if utf8.RuneStart(s[j]) {
			if tail := s[j:]; !fullRune(tail) {
				w.carry = append(w.carry, tail...)
				s = s[:j]
			}
			break
		}
	}
	for len(s) > 0 && w.err == nil {
		n := cut(s, partChunk)
		w.buf = appendEscaped(w.buf, s[:n])
		s = s[n:]
		w.maybeFlush()
	}
}

// finishCarry completes the rune held back with the first bytes of s and
// writes it; it returns what is left of s.
func finishCarry[T []byte | string](w *Writer, s T) T {
	var tmp [utf8.UTFMax]byte
	n := copy(tmp[:], w.carry)
	n += copy(tmp[n:], s)
	if !utf8.FullRune(tmp[:n]) {
		// s is too short to finish it: hold all of it.
		w.carry = append(w.carry, s...)
		return s[len(s):]
	}
	_, size := utf8.DecodeRune(tmp[:n])
	if size <= len(w.carry) {
		// The held bytes begin no rune (U+FFFD): write them one by one.
		w.buf = appendEscaped(w.buf, w.carry[:size])
		w.carry = w.carry[:copy(w.carry, w.carry[size:])]
		return s
	}
	w.buf = appendEscaped(w.buf, tmp[:size])
	used := size - len(w.carry)
	w.carry = w.carry[:0]
	return s[used:]
}

func fullRune[T []byte | string](s T) bool {
	var tmp [utf8.UTFMax]byte
	return utf8.FullRune(tmp[:copy(tmp[:], s)])
}

// cut is where to end a chunk of s of at most n bytes: at a rune's start,
// so that no rune is split (decoding s whole starts a rune at every byte
// that can start one; a byte that cannot, with none in the UTFMax-1 bytes
// before it, is a lone continuation byte, U+FFFD on its own).
func cut[T []byte | string](s T, n int) int {
	if n >= len(s) {
		return len(s)
	}
	for k := n; k > 0 && k > n-utf8.UTFMax; k-- {
		if utf8.RuneStart(s[k]) {
			return k
		}
	}
	return n
}

func (w *Writer) raw(c byte) {
	w.buf = append(w.buf, c)
	w.maybeFlush()
}

func (w *Writer) maybeFlush() {
	if len(w.buf) >= flushAt {
		_ = w.Flush()
	}
}
