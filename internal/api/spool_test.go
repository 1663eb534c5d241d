package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/sandboxd/sandboxd/internal/output"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/spool"
)

// captureExec runs nothing: it writes out to stdout and errOut to stderr
// through Captures, as the backends do, spooled when the stream asks.
type captureExec struct {
	*fakeExec
	out, errOut []byte
	// files counts the spool files made.
	files int
}

// Plan caps each stream at 4 MiB unless the request says: Piston's
// streams too are spooled.
func (c *captureExec) Plan(spec *run.Spec) (*run.Plan, error) {
	p, err := c.fakeExec.Plan(spec)
	if err == nil && spec.Limits.Output == 0 {
		p.Limits.Output = 4 << 20
	}
	return p, err
}

func (c *captureExec) Run(ctx context.Context, p *run.Plan, s run.Stream) (*run.Result, error) {
	res := &run.Result{ID: "r1", Status: run.StatusOK, Runtime: "python"}
	for _, st := range []struct {
		live  func() *output.Capture
		data  []byte
		bytes *[]byte
		file  **spool.File
		trunc *bool
	}{
		{func() *output.Capture { return output.New(int64(p.Limits.Output), s.Stdout, nil) }, c.out, &res.Stdout, &res.StdoutFile, &res.StdoutTruncated},
		{func() *output.Capture { return output.New(int64(p.Limits.Output), s.Stderr, nil) }, c.errOut, &res.Stderr, &res.StderrFile, &res.StderrTruncated},
	} {
		cp := st.live()
		cp.SetSpool(s.Spool)
		for b := st.data; len(b) > 0; b = b[min(len(b), 50000):] {
			cp.Write(b[:min(len(b), 50000)])
		}
		*st.bytes, *st.trunc = cp.Result()
		if *st.file = cp.File(); *st.file != nil {
			c.files++
		}
	}
	return res, nil
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("needs /proc/self/fd to count this process's open fds: %v", err)
	}
	return len(ents)
}

// TestSpooledAnswers: with a Spool, a run's answer, a streamed run's last
// event and Piston's answer are the bytes they are without one (outputs
// past the spool threshold, past the output cap, not UTF-8), and every
// spool file is closed when the handler returns.
func TestSpooledAnswers(t *testing.T) {
	sp, err := spool.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	x := &captureExec{
		fakeExec: newFake(),
		out:      []byte(strings.Repeat("<é€\U0001F600", output.SpoolAt/5)),
		errOut:   bytes.Repeat([]byte{0xff, 'a', 0xe2, 0x82}, output.SpoolAt/4+1000),
	}
	plain := newServer(x, Config{})
	spooled := newServer(x, Config{Spool: sp})
	fds := openFDs(t)
	for _, req := range []struct{ path, body string }{
		{"/v1/runs", `{"runtime":"python","code":"x"}`},
		{"/v1/runs", fmt.Sprintf(`{"runtime":"python","code":"x","limits":{"output":%d}}`, output.SpoolAt+12345)},
		{"/v1/runs?stream=1", `{"runtime":"python","code":"x"}`},
		{"/api/v2/execute", `{"language":"python","version":"*","files":[{"content":"x"}]}`},
	} {
		want := do(t, plain, "POST", req.path, req.body, "Content-Type", "application/json")
		got := do(t, spooled, "POST", req.path, req.body, "Content-Type", "application/json")
		if want.Code != 200 || got.Code != 200 {
			t.Fatalf("%s: status %d and %d: %.200s", req.path, want.Code, got.Code, got.Body)
		}
		if !bytes.Equal(got.Body.Bytes(), want.Body.Bytes()) {
			t.Errorf("%s %s: spooled, %d bytes of answer; in memory %d; they differ", req.path, req.body, got.Body.Len(), want.Body.Len())
		}
		if req.path == "/v1/runs" && !json.Valid(got.Body.Bytes()) {
			t.Errorf("%s: the answer is not JSON", req.path)
		}
		if n := openFDs(t); n != fds {
			t.Errorf("%s: %d fds open after the answer, %d before", req.path, n, fds)
		}
	}
	if x.files != 8 {
		t.Errorf("%d outputs were spooled; want 8, both streams of each run", x.files)
	}
}
