package run

import (
	"bytes"
	"encoding/json"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/jsonstream"
)

// The reference: a Result's and a cell's JSON as encoding/json wrote them
// before EncodeJSON, each struct marshalled whole. EncodeJSON must write
// the same bytes, so that no client sees a difference.

type refOutputFile struct {
	Name     string `json:"name"`
	Size     int64  `json:"size"`
	Mode     uint32 `json:"mode"`
	Content  string `json:"content"`
	Encoding string `json:"encoding,omitempty"`
	Omitted  bool   `json:"omitted,omitempty"`
}

type refResult struct {
	ID         string `json:"id"`
	Status     Status `json:"status"`
	Reason     string `json:"reason,omitempty"`
	ExitCode   int    `json:"exit_code"`
	Signal     int    `json:"signal,omitempty"`
	SignalName string `json:"signal_name,omitempty"`
	outputJSON
	StdoutTruncated bool            `json:"stdout_truncated,omitempty"`
	StderrTruncated bool            `json:"stderr_truncated,omitempty"`
	WallTimeMS      float64         `json:"wall_time_ms"`
	CPUTimeMS       float64         `json:"cpu_time_ms"`
	PeakMemory      int64           `json:"peak_memory_bytes"`
	OOMKills        int             `json:"oom_kills,omitempty"`
	Files           []refOutputFile `json:"files,omitempty"`
	FilesTruncated  bool            `json:"files_truncated,omitempty"`
	Compile         *refResult      `json:"compile,omitempty"`
	Runtime         string          `json:"runtime,omitempty"`
	Version         string          `json:"version,omitempty"`
	Isolation       Isolation       `json:"isolation"`
	Error           string          `json:"error,omitempty"`
}

func refOutput(stdout, stderr []byte) outputJSON {
	var o outputJSON
	o.Stdout, o.StdoutEncoding = EncodeBytes(stdout)
	o.Stderr, o.StderrEncoding = EncodeBytes(stderr)
	return o
}

func refOf(r *Result) *refResult {
	if r == nil {
		return nil
	}
	j := &refResult{
		ID: r.ID, Status: r.Status, Reason: r.Reason, ExitCode: r.ExitCode,
		Signal: r.Signal, SignalName: r.SignalName, outputJSON: refOutput(r.Stdout, r.Stderr),
		StdoutTruncated: r.StdoutTruncated, StderrTruncated: r.StderrTruncated,
		WallTimeMS: ms(r.WallTime), CPUTimeMS: ms(r.CPUTime),
		PeakMemory: r.PeakMemory, OOMKills: r.OOMKills,
		FilesTruncated: r.FilesTruncated, Compile: refOf(r.Compile),
		Runtime: r.Runtime, Version: r.Version, Isolation: r.Isolation, Error: r.Error,
	}
	for _, f := range r.Files {
		rf := refOutputFile{Name: f.Name, Size: f.Size, Mode: f.Mode, Omitted: f.Content == nil && f.Size > 0}
		rf.Content, rf.Encoding = EncodeBytes(f.Content)
		j.Files = append(j.Files, rf)
	}
	return j
}

// refCellOf is the cell's decoding struct, which encoding/json marshals by
// its tags: none of its fields has a MarshalJSON. (resultJSON cannot serve
// for a Result: its files and compile step marshal through EncodeJSON.)
func refCellOf(c *CellResult) *cellResultJSON {
	return &cellResultJSON{
		Session: c.Session, Cell: c.Cell, Status: c.Status, Reason: c.Reason,
		outputJSON:      refOutput(c.Stdout, c.Stderr),
		StdoutTruncated: c.StdoutTruncated, StderrTruncated: c.StderrTruncated,
		Result: c.Result, Error: c.Error, Display: c.Display,
		WallTimeMS: ms(c.WallTime), CPUTimeMS: ms(c.CPUTime), State: c.State,
	}
}

// gen draws values full of what JSON escapes: <>&, U+2028 and U+2029,
// control bytes, quotes, invalid UTF-8; sometimes long, sometimes empty.
type gen struct{ rng *rand.Rand }

// bytes draws an output: at times long, as outputs are.
func (g gen) bytes() []byte { return g.draw(true) }

// str draws a name or a message: short.
func (g gen) str() string { return string(g.draw(false)) }

func (g gen) draw(long bool) []byte {
	const alphabet = "<>&\"\\\x00\x01\x1f\x7fa\n\xe2\x80\xa8\xa9\xff\xc3\xa9\xf0\x9f\x98\x80"
	switch g.rng.IntN(6) {
	case 0:
		return nil
	case 1:
		return []byte{}
	}
	n := g.rng.IntN(40)
	if long && g.rng.IntN(8) == 0 {
		n = g.rng.IntN(20 << 10)
	}
	b := make([]byte, n)
	valid := g.rng.IntN(2) == 0
	for i := range b {
		b[i] = alphabet[g.rng.IntN(len(alphabet))]
	}
	if valid {
		b = bytes.ToValidUTF8(b, []byte("\u2028"))
	}
	return b
}

func (g gen) bundle() MIMEBundle {
	if g.rng.IntN(3) == 0 {
		return nil
	}
	b := MIMEBundle{}
	for range g.rng.IntN(4) {
		b[g.str()] = string(g.bytes())
	}
	return b
}

func (g gen) result(depth int) *Result {
	r := &Result{
		ID: g.str(), Status: Status(g.str()), Reason: g.str(), ExitCode: g.rng.IntN(3) - 1,
		Signal: g.rng.IntN(2) * 9, SignalName: g.str(), Stdout: g.bytes(), Stderr: g.bytes(),
		StdoutTruncated: g.rng.IntN(2) == 0, StderrTruncated: g.rng.IntN(2) == 0,
		WallTime: time.Duration(g.rng.Int64N(1e12)), CPUTime: time.Duration(g.rng.Int64N(1e9)),
		PeakMemory: g.rng.Int64N(1 << 40), OOMKills: g.rng.IntN(2), FilesTruncated: g.rng.IntN(2) == 0,
		Runtime: g.str(), Version: g.str(), Error: g.str(),
		Isolation: Isolation{Backend: Backend(g.str()), Namespaces: []string{g.str()}, Seccomp: true, UID: 65534, Warm: g.rng.IntN(2) == 0},
	}
	for range g.rng.IntN(3) {
		r.Files = append(r.Files, OutputFile{Name: g.str(), Size: g.rng.Int64N(100), Mode: 0o644, Content: g.bytes()})
	}
	if depth > 0 && g.rng.IntN(2) == 0 {
		r.Compile = g.result(depth - 1)
	}
	return r
}

func (g gen) cell() *CellResult {
	c := &CellResult{
		Session: g.str(), Cell: g.rng.IntN(100), Status: Status(g.str()), Reason: g.str(),
		Stdout: g.bytes(), Stderr: g.bytes(), StdoutTruncated: g.rng.IntN(2) == 0,
		Result: g.bundle(), WallTime: time.Duration(g.rng.Int64N(1e12)), CPUTime: time.Duration(g.rng.Int64N(1e9)),
		State: SessionState(g.str()),
	}
	if g.rng.IntN(2) == 0 {
		c.Error = &CellError{Name: g.str(), Value: g.str(), Traceback: string(g.bytes())}
	}
	for range g.rng.IntN(3) {
		c.Display = append(c.Display, g.bundle())
	}
	return c
}

// encodings are the ways a Value reaches a client: json.Marshal (through
// MarshalJSON), json.Encoder (writeJSON before), and EncodeJSON.
func checkSame(t *testing.T, v jsonstream.Value, ref any) {
	t.Helper()
	want, err := json.Marshal(ref)
	if err != nil {
		t.Fatal(err)
	}
	streamed, err := jsonstream.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	marshalled, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var encoded bytes.Buffer
	if err := json.NewEncoder(&encoded).Encode(v); err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string][]byte{"EncodeJSON": streamed, "json.Marshal": marshalled, "json.Encoder": bytes.TrimSuffix(encoded.Bytes(), []byte("\n"))} {
		if !bytes.Equal(got, want) {
			t.Fatalf("%s differs from encoding/json's bytes:\n got %.2000q\nwant %.2000q", name, got, want)
		}
	}
}

// TestEncodeJSONMatchesEncodingJSON: results and cells drawn at random,
// full of what JSON escapes, are written byte for byte as encoding/json
// wrote them.
func TestEncodeJSONMatchesEncodingJSON(t *testing.T) {
	g := gen{rand.New(rand.NewPCG(7, 11))}
	for range 300 {
		r := g.result(2)
		checkSame(t, r, refOf(r))
		c := g.cell()
		checkSame(t, c, refCellOf(c))
	}
	checkSame(t, &Result{}, refOf(&Result{}))
	checkSame(t, &CellResult{}, refCellOf(&CellResult{}))
}

func FuzzEncodeJSON(f *testing.F) {
	f.Add(uint64(1), []byte("<\u2028\xff"))
	f.Fuzz(func(t *testing.T, seed uint64, out []byte) {
		g := gen{rand.New(rand.NewPCG(seed, 3))}
		r := g.result(1)
		r.Stdout = out
		checkSame(t, r, refOf(r))
		c := g.cell()
		c.Stderr = out
		checkSame(t, c, refCellOf(c))
	})
}

// BenchmarkResultJSON: a result with 16 MiB of "<" (96 MiB as JSON)
// written to a discarding client, streamed (EncodeJSON, what the daemon
// does) and marshalled whole (the reference, what it did). Compare B/op:
// the streamed answer allocates a few buffers, the marshalled one several
// times the JSON.
func BenchmarkResultJSON(b *testing.B) {
	r := &Result{ID: "r", Status: StatusOK, Stdout: bytes.Repeat([]byte("<"), 16<<20), Stderr: []byte{}}
	b.Run("streamed", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(r.Stdout)))
		for b.Loop() {
			if err := jsonstream.Encode(io.Discard, r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("marshalled", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(r.Stdout)))
		for b.Loop() {
			if err := json.NewEncoder(io.Discard).Encode(refOf(r)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
