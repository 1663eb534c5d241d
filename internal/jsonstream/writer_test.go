package jsonstream

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/iotest"
)

// tricky are inputs encoding/json escapes: HTML characters, U+2028 and
// U+2029, every control character, quotes and backslashes, invalid UTF-8
// (lone continuation bytes, cut runes, surrogates, overlong forms), and
// valid runes of every length.
var tricky = []string{
	"", "plain", "<<<>>>&&&", "a\u2028b\u2029c", "\"\\/", "\x7f", "é€😀",
	"\xff", "\x80\x80\x80\x80\x80", "\xe2\x82", "\xe2\x82\xac\xe2", "\xf0\x9f\x98",
	"\xed\xa0\x80", "\xc0\xaf", "\xf4\x90\x80\x80", "x\xe2\x28\xa1y",
}

func init() {
	var ctl strings.Builder
	for c := range 0x20 {
		ctl.WriteByte(byte(c))
	}
	tricky = append(tricky, ctl.String(), strings.Repeat("<", 3*partChunk+1),
		strings.Repeat("€", partChunk), strings.Repeat("\xe2\x82\xac\xe2", partChunk))
}

// stringVia writes s with BeginString and parts cut at the given sizes.
func stringVia(s []byte, cuts []int) []byte {
	var out bytes.Buffer
	w := NewWriter(&out)
	w.BeginString()
	for _, n := range cuts {
		n = min(n, len(s))
		w.StringPart(s[:n])
		s = s[n:]
	}
	w.StringPart(s)
	w.EndString()
	if err := w.Flush(); err != nil {
		panic(err)
	}
	return out.Bytes()
}

func marshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkString compares every way of writing s with json.Marshal's bytes.
func checkString(t testing.TB, s []byte, cuts []int) {
	t.Helper()
	want := marshal(t, string(s))
	var b1, b2 bytes.Buffer
	w1 := NewWriter(&b1)
	w1.Bytes(s)
	w2 := NewWriter(&b2)
	w2.String(string(s))
	if err := errorsOf(w1.Flush(), w2.Flush()); err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string][]byte{"Bytes": b1.Bytes(), "String": b2.Bytes(), "parts": stringVia(s, cuts)} {
		if !bytes.Equal(got, want) {
			t.Fatalf("%s(%q) with cuts %v:\n got %q\nwant %q", name, s, cuts, got, want)
		}
	}
	var b3 bytes.Buffer
	w3 := NewWriter(&b3)
	w3.Base64(s)
	if err := w3.Flush(); err != nil {
		t.Fatal(err)
	}
	if want := marshal(t, s); !bytes.Equal(b3.Bytes(), want) {
		t.Fatalf("Base64(%q):\n got %q\nwant %q", s, b3.Bytes(), want)
	}
}

func errorsOf(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// TestStringMatchesEncodingJSON: the tricky inputs, whole and cut into
// parts at every place in their first bytes, and joined two by two (a
// rune cut across parts is written whole, as in the joined string).
func TestStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range tricky {
		checkString(t, []byte(s), nil)
		for i := range min(len(s), 12) {
			checkString(t, []byte(s), []int{i, 1, 2})
		}
	}
	for _, a := range tricky[:16] {
		for _, b := range tricky[:16] {
			checkString(t, []byte(a+b), []int{len(a)})
		}
	}
}

// TestStringRandom: random bytes drawn mostly from the tricky ones, cut
// at random places.
func TestStringRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("<>&\"\\\x00\x1f\x7fa\xe2\x80\xa8\xa9\xff\xc3\xa9\xf0\x9f\x98\x80\xed\xa0")
	for range 1000 {
		s := make([]byte, rng.IntN(64)+rng.IntN(4)/3*rng.IntN(3*partChunk))
		for i := range s {
			s[i] = alphabet[rng.IntN(len(alphabet))]
		}
		cuts := make([]int, rng.IntN(5))
		for i := range cuts {
			cuts[i] = rng.IntN(len(s) + 1)
		}
		checkString(t, s, cuts)
	}
}

func FuzzString(f *testing.F) {
	for _, s := range tricky[:16] {
		f.Add([]byte(s), uint16(1), uint16(3))
	}
	f.Fuzz(func(t *testing.T, s []byte, c1, c2 uint16) {
		checkString(t, s, []int{int(c1) % (len(s) + 1), int(c2) % (len(s) + 1)})
	})
}

// TestStructure: objects, arrays, commas and Values nest as json.Marshal
// writes them.
func TestStructure(t *testing.T) {
	type inner struct {
		A []int           `json:"a"`
		B map[string]bool `json:"b"`
	}
	var out bytes.Buffer
	w := NewWriter(&out)
	w.BeginObject()
	w.Key("empty")
	w.BeginArray()
	w.EndArray()
	w.Key("list")
	w.BeginArray()
	w.String("<x>")
	w.Value(1.5)
	w.BeginObject()
	w.EndObject()
	w.Base64([]byte{0, 1, 2, 3})
	w.Value(inner{A: []int{1}, B: map[string]bool{"z": true, "a": false}})
	w.EndArray()
	w.Key("n")
	w.Value(nil)
	w.EndObject()
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	want := marshal(t, map[string]any{
		"empty": []int{},
		"list":  []any{"<x>", 1.5, struct{}{}, []byte{0, 1, 2, 3}, inner{A: []int{1}, B: map[string]bool{"z": true, "a": false}}},
		"n":     nil,
	})
	if out.String() != string(want) {
		t.Fatalf("got  %s\nwant %s", out.String(), want)
	}
}

// writeSizes records the size of each write.
type writeSizes struct {
	sizes []int
	total int
}

func (w *writeSizes) Write(p []byte) (int, error) {
	w.sizes = append(w.sizes, len(p))
	w.total += len(p)
	return len(p), nil
}

// TestBoundedWrites: a string of 8 MiB of "<" (48 MiB as JSON), as a
// value, as base64 and as a member's name, reaches the writer in writes no
// larger than the buffer's bound, and the buffer does not grow: the
// encoded copy is never held.
func TestBoundedWrites(t *testing.T) {
	const n = 8 << 20
	s := bytes.Repeat([]byte("<"), n)
	var rec writeSizes
	w := NewWriter(&rec)
	bound := cap(w.buf)
	w.BeginArray()
	w.Bytes(s)
	w.Base64(s)
	// A member's name is streamed too (a bundle's keys are the kernel's).
	w.BeginObject()
	w.Key(string(s))
	w.Value(1)
	w.EndObject()
	w.EndArray()
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if want := 1 + (6*n + 2) + 1 + ((n+2)/3*4 + 2) + 1 + (1 + 6*n + 2 + 1 + 1 + 1) + 1; rec.total != want {
		t.Fatalf("wrote %d bytes, want %d", rec.total, want)
	}
	for i, sz := range rec.sizes {
		if sz > bound {
			t.Fatalf("write %d was %d bytes, more than the buffer's %d", i, sz, bound)
		}
	}
	if cap(w.buf) != bound {
		t.Fatalf("the buffer grew from %d to %d bytes", bound, cap(w.buf))
	}
}

// failWriter fails every write.
type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) { f.n++; return 0, errTest }

var errTest = errors.New("write failed")

// TestStopsAtError: once a write fails, nothing more is written and Flush
// returns the error; a value json cannot encode is an error too.
func TestStopsAtError(t *testing.T) {
	var f failWriter
	w := NewWriter(&f)
	w.Bytes(bytes.Repeat([]byte("<"), 1<<20))
	if err := w.Flush(); err == nil || f.n != 1 {
		t.Fatalf("Flush = %v after %d writes; want the write's error after one", err, f.n)
	}
	w = NewWriter(new(bytes.Buffer))
	w.Value(func() {})
	if err := w.Flush(); err == nil || !strings.Contains(err.Error(), "func()") {
		t.Fatalf("Flush after an unencodable value = %v", err)
	}
}

// TestEncode: Encode writes what json.Encoder.Encode writes, newline
// included.
func TestEncode(t *testing.T) {
	v := map[string]string{"a": "<\u2028>"}
	var got, want bytes.Buffer
	if err := Encode(&got, v); err != nil {
		t.Fatal(err)
	}
	_ = json.NewEncoder(&want).Encode(v)
	if got.String() != want.String() {
		t.Fatalf("got %q want %q", got.String(), want.String())
	}
}

// TestFromReader: a value read from an io.Reader is written as the same
// bytes held whole would be, however the reader cuts it (one byte a time,
// half reads, runes cut at readChunk), as a string, as parts of one
// string among others, and as base64; a read error is the Writer's.
func TestFromReader(t *testing.T) {
	long := strings.Repeat("a€<", readChunk/5) + "\xe2\x82" + strings.Repeat("😀", readChunk/4+1)
	inputs := append([]string{long, long[:readChunk+1], long[:2*readChunk-1]}, tricky...)
	readers := map[string]func(string) io.Reader{
		"whole":    func(s string) io.Reader { return strings.NewReader(s) },
		"one byte": func(s string) io.Reader { return iotest.OneByteReader(strings.NewReader(s)) },
		"half":     func(s string) io.Reader { return iotest.HalfReader(strings.NewReader(s)) },
		"data+EOF": func(s string) io.Reader { return iotest.DataErrReader(strings.NewReader(s)) },
	}
	for _, s := range inputs {
		for name, rd := range readers {
			var b1, b2, b3 bytes.Buffer
			w1, w2, w3 := NewWriter(&b1), NewWriter(&b2), NewWriter(&b3)
			w1.StringFrom(rd(s))
			w2.Base64From(rd(s))
			w3.BeginString()
			w3.StringPart([]byte("\xe2"))
			w3.StringPartFrom(rd(s))
			w3.StringPart([]byte("\x82"))
			w3.EndString()
			if err := errorsOf(w1.Flush(), w2.Flush(), w3.Flush()); err != nil {
				t.Fatal(err)
			}
			for what, c := range map[string]struct{ got, want []byte }{
				"StringFrom":     {b1.Bytes(), marshal(t, s)},
				"Base64From":     {b2.Bytes(), marshal(t, []byte(s))},
				"StringPartFrom": {b3.Bytes(), marshal(t, "\xe2"+s+"\x82")},
			} {
				if !bytes.Equal(c.got, c.want) {
					t.Fatalf("%s of %d bytes read %s: got %d bytes, want %d (%.40q...)", what, len(s), name, len(c.got), len(c.want), c.got)
				}
			}
		}
	}
	boom := errors.New("boom")
	var out bytes.Buffer
	w := NewWriter(&out)
	w.StringFrom(io.MultiReader(strings.NewReader("abc"), iotest.ErrReader(boom)))
	if err := w.Flush(); !errors.Is(err, boom) {
		t.Errorf("a read error: Flush says %v", err)
	}
}
