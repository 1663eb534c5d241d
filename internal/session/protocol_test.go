package session

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sandboxd/sandboxd/internal/run"
)

// answerSeeds are lines a kernel sends, well and badly: every kind of
// answer, and the ways a broken or hostile kernel can get one wrong.
var answerSeeds = []string{
	// Valid, of every kind.
	`{"type": "ready", "language": "python", "version": "3.11.2"}`,
	`{"type":"ready","language":"javascript","version":"20.19.2"}`,
	`{"type": "display", "id": "7", "data": {"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"}}`,
	`{"type": "done", "id": "7", "status": "ok", "result": {"text/plain": "42"}}`,
	`{"type": "done", "id": "7", "status": "ok"}`,
	`{"type": "done", "id": "8", "status": "error", "error": {"name": "ZeroDivisionError", "value": "division by zero", "traceback": "Traceback ..."}}`,
	`{"type": "done", "id": "9", "status": "ok", "result": null, "error": null, "data": {}}`,
	"  {\"type\": \"done\", \"id\": \"\\u0000\", \"status\": \"ok\"}  ",
	// Truncated.
	`{"type": "done", "id": "7", "status": "o`,
	`{"type": "display", "id": "7", "data": {"image/png": "iVBO`,
	`{`,
	``,
	// Wrong types.
	`{"type": 1}`,
	`{"type": "done", "id": 7}`,
	`{"type": "display", "id": "7", "data": {"text/plain": 1}}`,
	`{"type": "display", "id": "7", "data": ["x"]}`,
	`{"type": "done", "id": "7", "error": "boom"}`,
	`["ready"]`,
	`"ready"`,
	`null`,
	`{}`,
	// Unknown types and fields.
	`{"type": "stream", "id": "7"}`,
	`{"type": "done", "id": "7", "status": "ok", "extra": true}`,
	`{"type": "done", "id": "7", "error": {"name": "E", "lineno": 3}}`,
	// Duplicate keys, case.
	`{"type": "done", "type": "display", "id": "1", "id": "2", "data": {"a": "1", "a": "2"}}`,
	`{"TYPE": "ready", "Version": "x"}`,
	// NUL and invalid UTF-8.
	"{\"type\": \"ready\", \"version\": \"3\x00\"}",
	"{\"type\": \"ready\", \"version\": \"\xff\xfe\"}",
	"{\"type\": \"display\", \"id\": \"7\", \"data\": {\"\xc3\": \"\xed\xa0\x80\"}}",
	"\x00",
	// Huge fields.
	`{"type": "done", "id": "` + strings.Repeat("9", 1<<12) + `", "status": "ok"}`,
	`{"type": "display", "id": "7", "data": {"image/png": "` + strings.Repeat("A", 1<<16) + `"}}`,
	`{"type": "done", "id": "7", "status": "ok", "result": {"n": "` + strings.Repeat("[", 1<<10) + `"}}`,
	strings.Repeat("[", 1<<12),
	// Line ends.
	"{\"type\": \"ready\"}\r\n",
	"\n\n{\"type\": \"ready\"}",
}

// FuzzAnswer feeds the daemon's answer reader what a kernel could write:
// it never panics, a line over the cap or malformed is an error and never
// a half-filled answer, and an answer it takes is one the kernel could
// have sent whole (valid JSON of a known type, the same when sent again).
func FuzzAnswer(f *testing.F) {
	for _, s := range answerSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkLines(t, data)
		checkParse(t, data)
		checkRoundTrip(t, data)
	})
}

// fuzzCap is the line cap under the fuzzer: small, so lines pass it.
const fuzzCap = 256

// checkLines reads data as lines capped at fuzzCap: each line taken is
// the next line of data; a longer one, or one cut off by EOF, is an
// error.
func checkLines(t *testing.T, data []byte) {
	br := bufio.NewReaderSize(bytes.NewReader(data), 16)
	rest := data
	for {
		line, err := readLine(br, fuzzCap)
		want, after, complete := bytes.Cut(rest, []byte("\n"))
		switch {
		case len(rest) == 0:
			if !errors.Is(err, io.EOF) {
				t.Fatalf("at the end: %q, %v; want io.EOF", line, err)
			}
			return
		case len(want) > fuzzCap:
			if !errors.Is(err, errProtocol) {
				t.Fatalf("a line of %d bytes over a cap of %d: %q, %v", len(want), fuzzCap, line, err)
			}
			return
		case !complete:
			if !errors.Is(err, errProtocol) {
				t.Fatalf("a line cut off by EOF: %q, %v", line, err)
			}
			return
		case err != nil || !bytes.Equal(line, want):
			t.Fatalf("read %q, %v; want %q", line, err, want)
		}
		rest = after
	}
}

// checkParse parses data as one line.
func checkParse(t *testing.T, data []byte) {
	a, err := parseAnswer(data)
	if err != nil {
		if !errors.Is(err, errProtocol) {
			t.Fatalf("error %v is not a protocol violation", err)
		}
		if !reflect.DeepEqual(a, answer{}) {
			t.Fatalf("an error (%v) came with an answer: %+v", err, a)
		}
		return
	}
	if !json.Valid(data) {
		t.Fatalf("took a malformed line %q as %+v", data, a)
	}
	switch a.Type {
	case "ready", "display", "done":
	default:
		t.Fatalf("took an answer of type %q", a.Type)
	}
	// What the daemon took, sent again, is taken the same.
	again, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	b, err := parseAnswer(again)
	if err != nil || !reflect.DeepEqual(a, b) {
		t.Fatalf("%q parsed as %+v; sent again as %s it parsed as %+v, %v", data, a, again, b, err)
	}
}

// checkRoundTrip sends data in every field of an answer as a kernel
// would (json.Marshal escapes as json.dumps and JSON.stringify do), and
// reads it back the same.
func checkRoundTrip(t *testing.T, data []byte) {
	if !utf8.Valid(data) {
		return // a kernel's JSON encoder sends text, not bytes
	}
	s := string(data)
	for _, a := range []answer{
		{Type: "ready", Language: s, Version: s},
		{Type: "display", ID: s, Data: run.MIMEBundle{"text/plain": s, s: s}},
		{Type: "done", ID: s, Status: "ok", Result: run.MIMEBundle{s: s}},
		{Type: "done", ID: s, Status: "error", Error: &run.CellError{Name: s, Value: s, Traceback: s}},
	} {
		line, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		b, err := parseAnswer(line)
		if err != nil || !reflect.DeepEqual(a, b) {
			t.Fatalf("sent %+v as %s; read %+v, %v", a, line, b, err)
		}
	}
}

// TestParseAnswer: the kernels' answers of every kind read as sent.
func TestParseAnswer(t *testing.T) {
	tests := []struct {
		line string
		want answer
	}{
		{`{"type": "ready", "language": "python", "version": "3.11.2"}`, answer{Type: "ready", Language: "python", Version: "3.11.2"}},
		{`{"type": "display", "id": "7", "data": {"image/png": "iVBO", "text/plain": "<Figure>"}}`, answer{Type: "display", ID: "7", Data: run.MIMEBundle{"image/png": "iVBO", "text/plain": "<Figure>"}}},
		{`{"type": "done", "id": "7", "status": "ok", "result": {"text/plain": "42"}}`, answer{Type: "done", ID: "7", Status: "ok", Result: run.MIMEBundle{"text/plain": "42"}}},
		{`{"type": "done", "id": "8", "status": "error", "error": {"name": "E", "value": "v", "traceback": "tb"}}`, answer{Type: "done", ID: "8", Status: "error", Error: &run.CellError{Name: "E", Value: "v", Traceback: "tb"}}},
	}
	for _, tt := range tests {
		got, err := parseAnswer([]byte(tt.line))
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: got %+v, %v; want %+v", tt.line, got, err, tt.want)
		}
	}
}

// TestReadAnswersCap: a line over maxAnswer ends the reading with a
// protocol violation, and nothing of it is delivered.
func TestReadAnswersCap(t *testing.T) {
	ok := `{"type": "ready", "language": "python", "version": "3"}` + "\n"
	huge := `{"type": "display", "id": "1", "data": {"image/png": "` + strings.Repeat("A", maxAnswer) + `"}}` + "\n"
	out := make(chan answer, 4)
	var err error
	readAnswers(strings.NewReader(ok+huge+ok), out, &err)
	var got []answer
	for a := range out {
		got = append(got, a)
	}
	if len(got) != 1 || got[0].Type != "ready" || !errors.Is(err, errProtocol) {
		t.Fatalf("got %+v, %v; want the first ready, then a protocol violation", got, err)
	}
}

// TestParseAnswerBoundsErrors: what a hostile kernel puts in an answer (a
// field name, a type, a value of the wrong kind, each a MiB long) comes
// back in the protocol error bounded, never whole.
func TestParseAnswerBoundsErrors(t *testing.T) {
	huge := strings.Repeat("f", 1<<20)
	for _, line := range []string{
		`{"type": "done", "` + huge + `": 1}`,
		`{"type": "` + huge + `"}`,
		`{"type": "done", "id": 7` + huge + `}`,
		`{"type": "done", "error": "` + huge + `"}`,
		`{"type": "\n` + huge + `"}`,
	} {
		_, err := parseAnswer([]byte(line))
		if !errors.Is(err, errProtocol) {
			t.Fatalf("%.40s…: %v; want a protocol violation", line, err)
		}
		if msg := err.Error(); len(msg) > run.MaxMessage+100 || !utf8.ValidString(msg) || strings.Contains(msg, "\n") {
			t.Errorf("%.40s…: an error of %d bytes: %.200q", line, len(msg), msg)
		}
	}
}

// BenchmarkReadAnswersDisplay reads a 1 MiB display answer (a large
// figure's base64) through a pipe, as from a kernel, beside the baseline
// of the same bytes copied through a pipe to nowhere: readAnswers' small
// buffer costs more reads of a large answer, and this says how much.
func BenchmarkReadAnswersDisplay(b *testing.B) {
	line := []byte(`{"type": "display", "id": "1", "data": {"image/png": "` + strings.Repeat("A", 1<<20) + `"}}` + "\n")
	through := func(b *testing.B, read func(io.Reader)) {
		b.SetBytes(int64(len(line)))
		for b.Loop() {
			r, w, err := os.Pipe()
			if err != nil {
				b.Fatal(err)
			}
			go func() { _, _ = w.Write(line); w.Close() }()
			read(r)
			r.Close()
		}
	}
	b.Run("baseline=copy", func(b *testing.B) {
		through(b, func(r io.Reader) { _, _ = io.Copy(io.Discard, r) })
	})
	b.Run("readAnswers", func(b *testing.B) {
		through(b, func(r io.Reader) {
			out := make(chan answer, 1)
			var err error
			readAnswers(r, out, &err)
			if a := <-out; a.Type != "display" || err != nil {
				b.Fatalf("got %q, %v", a.Type, err)
			}
		})
	})
}
