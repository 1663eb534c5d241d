package run

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/sandboxd/sandboxd/internal/output"
	"github.com/sandboxd/sandboxd/internal/spool"
)

// spooled captures b with a Capture on sp, as a run with a Spool does, and
// returns what the Result gets: the bytes left in memory and the file.
func spooled(t *testing.T, sp *spool.Dir, b []byte) ([]byte, *spool.File) {
	t.Helper()
	c := output.New(int64(len(b)), nil, nil)
	c.SetSpool(sp)
	c.Write(b)
	kept, _ := c.Result()
	return kept, c.File()
}

// TestSpooledResultJSON: a Result whose output waits in spool files
// encodes to the bytes it would have in memory (text, and base64 for
// output that is not UTF-8, its compile step's too), and Close closes
// every file.
func TestSpooledResultJSON(t *testing.T) {
	sp, err := spool.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	text := []byte(strings.Repeat("<é€\U0001F600\u2028", output.SpoolAt/10))
	binary := append(bytes.Repeat([]byte{0xff, 'a', 0xe2}, output.SpoolAt/3), 0xe2, 0x82)
	in := Result{ID: "x", Status: StatusOK, Stdout: text, Stderr: binary, Compile: &Result{Stdout: []byte{}, Stderr: binary}}
	want, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	out := in
	out.Stdout, out.StdoutFile = spooled(t, sp, text)
	out.Stderr, out.StderrFile = spooled(t, sp, binary)
	compile := *in.Compile
	compile.Stderr, compile.StderrFile = spooled(t, sp, binary)
	out.Compile = &compile
	if out.StdoutFile == nil || out.StderrFile == nil || compile.StderrFile == nil || len(out.Stdout) != 0 {
		t.Fatal("the outputs were not spooled")
	}
	got, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("spooled: %d bytes of JSON, in memory %d; they differ", len(got), len(want))
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := json.Marshal(out); err == nil {
		t.Error("a closed Result's spool files still read")
	}
	if err := out.Close(); err != nil {
		t.Errorf("a second Close: %v", err)
	}
	var none *Result
	if err := none.Close(); err != nil {
		t.Errorf("Close of a nil Result: %v", err)
	}
}
