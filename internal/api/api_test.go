package api

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/admission"
	"github.com/sandboxd/sandboxd/internal/errdefs"
	"github.com/sandboxd/sandboxd/internal/executor"
	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/metrics"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/runtimes"
)

// fakeExec runs nothing: it echoes the entry file's content as stdout,
// through the stream too, and blocks while block is open.
type fakeExec struct {
	reg   *runtimes.Registry
	block chan struct{}
	mu    sync.Mutex
	specs []*run.Spec
}

func newFake() *fakeExec {
	return &fakeExec{reg: runtimes.Default()}
}

func (f *fakeExec) Plan(spec *run.Spec) (*run.Plan, error) {
	if len(spec.Files) == 0 {
		return nil, fmt.Errorf("%w: no files", executor.ErrInvalid)
	}
	if spec.Runtime != "" {
		if _, err := f.reg.Lookup(spec.Runtime); err != nil {
			return nil, err
		}
	}
	l := spec.Limits.Merge(limits.Defaults())
	if err := l.Validate(limits.DefaultCeiling()); err != nil {
		return nil, err
	}
	return &run.Plan{Spec: spec, Runtime: spec.Runtime, Backend: run.BackendProcess, Limits: l}, nil
}

func (f *fakeExec) Run(ctx context.Context, p *run.Plan, s run.Stream) (*run.Result, error) {
	spec := p.Spec
	f.mu.Lock()
	f.specs = append(f.specs, spec)
	f.mu.Unlock()
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return run.Canceled(ctx.Err(), "it was faked"), nil
		}
	}
	out := spec.Files[0].Content
	if s.Stdout != nil {
		s.Stdout.Write(out)
	}
	if s.Stderr != nil {
		s.Stderr.Write([]byte("err"))
	}
	return &run.Result{ID: "r1", Status: run.StatusOK, Runtime: "python", Stdout: out, Stderr: []byte("err")}, nil
}

// newServer serves x as the daemon does: admitted through a gate of
// concurrency and queue (default 2 and 64), counted and logged.
func newServer(x run.Runner, cfg Config, gate ...int) *Server {
	c, q := 2, 64
	if len(gate) == 2 {
		c, q = gate[0], gate[1]
	}
	g := admission.New(c, q)
	m := metrics.New(metrics.Sources{Running: g.Running, Waiting: g.Waiting})
	cfg.Gate, cfg.Metrics = g, m
	return New(&metrics.Runner{Next: &admission.Runner{Gate: g, Next: x}, Metrics: m}, cfg)
}

// do sends a request as a local client does: to Host localhost:8080
// (a "Host" in hdr replaces it), with the headers hdr names.
func do(t *testing.T, h http.Handler, method, path, body string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Host = "localhost:8080"
	for i := 0; i+1 < len(hdr); i += 2 {
		if http.CanonicalHeaderKey(hdr[i]) == "Host" {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func errCode(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	var eb ErrorBody
	if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil {
		t.Fatalf("error body is not JSON: %q", rec.Body.String())
	}
	if eb.Error.Message == "" {
		t.Errorf("error without a message: %q", rec.Body.String())
	}
	return eb.Error.Code
}

func TestRunErrors(t *testing.T) {
	s := newServer(newFake(), Config{MaxBody: 4096})
	cases := []struct {
		name, body string
		status     int
		code       string
	}{
		{"malformed", `{"runtime":`, 400, "invalid_argument"},
		{"unknown field", `{"runtime":"python","code":"x","limts":{}}`, 400, "invalid_argument"},
		{"bad unit", `{"runtime":"python","code":"x","limits":{"memory":"12XB"}}`, 400, "invalid_argument"},
		{"above ceiling", `{"runtime":"python","code":"x","limits":{"memory":"100GiB"}}`, 400, "invalid_argument"},
		{"unknown runtime", `{"runtime":"cobol","code":"x"}`, 400, "invalid_argument"},
		{"code and files", `{"runtime":"python","code":"x","files":[{"name":"a.py","content":"y"}]}`, 400, "invalid_argument"},
		{"code without runtime", `{"code":"x"}`, 400, "invalid_argument"},
		{"trailing data", `{"runtime":"python","code":"x"} {}`, 400, "invalid_argument"},
		{"trailing bracket", `{"runtime":"python","code":"x"}]`, 400, "invalid_argument"},
		{"trailing brace", `{"runtime":"python","code":"x"}}`, 400, "invalid_argument"},
		{"bad file encoding", `{"files":[{"name":"a.py","content":"x","encoding":"rot13"}]}`, 400, "invalid_argument"},
		{"bad stdin encoding", `{"runtime":"python","code":"x","stdin":"eA==","stdin_encoding":"rot13"}`, 400, "invalid_argument"},
		{"bad stdin base64", `{"runtime":"python","code":"x","stdin":"not base64!","stdin_encoding":"base64"}`, 400, "invalid_argument"},
		{"too large", `{"runtime":"python","code":"` + strings.Repeat("x", 5000) + `"}`, 413, "payload_too_large"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := do(t, s, "POST", "/v1/runs", c.body)
			if rec.Code != c.status || errCode(t, rec) != c.code {
				t.Errorf("got %d %s, want %d %s", rec.Code, rec.Body.String(), c.status, c.code)
			}
		})
	}
	if rec := do(t, s, "GET", "/nope", ""); rec.Code != 404 || errCode(t, rec) != "not_found" {
		t.Errorf("unknown path: %d %s", rec.Code, rec.Body.String())
	}
	if rec := do(t, s, "DELETE", "/v1/runs", ""); rec.Code != 405 || errCode(t, rec) != "method_not_allowed" {
		t.Errorf("wrong method: %d %s", rec.Code, rec.Body.String())
	}
}

func TestRunShortForm(t *testing.T) {
	f := newFake()
	s := newServer(f, Config{})
	rec := do(t, s, "POST", "/v1/runs", `{"runtime":"py","code":"print(1)","stdin":"in","args":["a"],"limits":{"timeout":"2s","memory":134217728}}`)
	if rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body.String())
	}
	var res run.Result
	if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil || string(res.Stdout) != "print(1)" {
		t.Fatalf("result %+v %v", res, err)
	}
	spec := f.specs[0]
	if spec.Files[0].Name != "main.py" || string(spec.Stdin) != "in" || spec.Args[0] != "a" ||
		spec.Limits.Timeout != limits.Duration(2*time.Second) || spec.Limits.Memory != 128*limits.MiB {
		t.Errorf("spec %+v", spec)
	}
}

// TestRunStdinBytes: stdin that is not UTF-8 comes as base64 with
// stdin_encoding, as a file's content does, and reaches the run as the
// bytes it was.
func TestRunStdinBytes(t *testing.T) {
	f := newFake()
	s := newServer(f, Config{})
	in := []byte{0, 0xff, 0xfe, 'a', 0x80, '\n'}
	body := `{"runtime":"py","code":"x","stdin":"` + base64.StdEncoding.EncodeToString(in) + `","stdin_encoding":"base64"}`
	if rec := do(t, s, "POST", "/v1/runs", body); rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body.String())
	}
	if got := f.specs[0].Stdin; !bytes.Equal(got, in) {
		t.Errorf("stdin %q, want %q", got, in)
	}
}

func TestRunStream(t *testing.T) {
	s := newServer(newFake(), Config{})
	rec := do(t, s, "POST", "/v1/runs?stream=1", `{"runtime":"python","code":"out"}`)
	if ct := rec.Header().Get("Content-Type"); rec.Code != 200 || ct != ndjson {
		t.Fatalf("%d %s", rec.Code, ct)
	}
	var types []string
	for _, line := range strings.Split(strings.TrimSpace(rec.Body.String()), "\n") {
		var ev Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		types = append(types, ev.Type+":"+ev.Data)
	}
	if got := strings.Join(types, ","); got != "stdout:out,stderr:err,result:" {
		t.Errorf("events %s", got)
	}
}

func TestAuth(t *testing.T) {
	s := New(newFake(), Config{Tokens: []string{"s3cret"}})
	if rec := do(t, s, "GET", "/v1/runtimes", ""); rec.Code != 401 || rec.Header().Get("WWW-Authenticate") == "" {
		t.Errorf("no token: %d", rec.Code)
	}
	if rec := do(t, s, "GET", "/v1/runtimes", "", "Authorization", "Bearer wrong"); rec.Code != 401 {
		t.Errorf("wrong token: %d", rec.Code)
	}
	for _, h := range []string{"Bearer s3cret", "bearer s3cret", "BEARER  s3cret"} {
		if rec := do(t, s, "GET", "/v1/runtimes", "", "Authorization", h); rec.Code != 200 {
			t.Errorf("%q: %d", h, rec.Code)
		}
	}
	if rec := do(t, s, "GET", "/v1/runtimes", "", "Authorization", "Basic s3cret"); rec.Code != 401 {
		t.Errorf("another scheme: %d", rec.Code)
	}
	for _, p := range []string{"/healthz", "/readyz", "/openapi.json"} {
		if rec := do(t, s, "GET", p, ""); rec.Code != 200 {
			t.Errorf("%s without token: %d", p, rec.Code)
		}
	}
}

// TestQueueFull: past the slots and the queue, 429 with Retry-After, and
// readiness fails until a slot frees.
func TestQueueFull(t *testing.T) {
	f := newFake()
	f.block = make(chan struct{})
	s := newServer(f, Config{}, 1, 1)
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			do(t, s, "POST", "/v1/runs", `{"runtime":"python","code":"x"}`)
		}()
	}
	for s.cfg.Gate.Running() != 1 || s.cfg.Gate.Waiting() != 1 {
		time.Sleep(time.Millisecond)
	}
	rec := do(t, s, "POST", "/v1/runs", `{"runtime":"python","code":"x"}`)
	if rec.Code != 429 || rec.Header().Get("Retry-After") == "" || errCode(t, rec) != "too_many_requests" {
		t.Errorf("overload: %d %s", rec.Code, rec.Body.String())
	}
	if rec := do(t, s, "GET", "/readyz", ""); rec.Code != 503 {
		t.Errorf("readyz while full: %d", rec.Code)
	}
	close(f.block)
	wg.Wait()
	if rec := do(t, s, "GET", "/readyz", ""); rec.Code != 200 {
		t.Errorf("readyz after: %d", rec.Code)
	}
	metrics := do(t, s, "GET", "/metrics", "").Body.String()
	for _, want := range []string{`sandboxd_requests_rejected_total{reason="queue_full"} 1`, `sandboxd_runs_total{runtime="python",status="ok"} 2`, "sandboxd_queue_depth 0", "sandboxd_runs_active 0"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestOpenAPICoversRoutes: every route is documented with its method, and
// the document documents nothing the server does not serve.
func TestOpenAPICoversRoutes(t *testing.T) {
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi %q", doc.OpenAPI)
	}
	served := map[string]bool{}
	for _, r := range newServer(newFake(), Config{}).routes() {
		method, path, _ := strings.Cut(r.pattern, " ")
		// OpenAPI writes ServeMux's {path...} as {path}.
		path = strings.ReplaceAll(path, "...}", "}")
		served[strings.ToLower(method)+" "+path] = true
		if _, ok := doc.Paths[path][strings.ToLower(method)]; !ok {
			t.Errorf("route %s is not in openapi.json", r.pattern)
		}
	}
	for path, ops := range doc.Paths {
		for method := range ops {
			if !served[method+" "+path] {
				t.Errorf("openapi.json documents %s %s, which is not served", method, path)
			}
		}
	}
}

func TestVersionMatches(t *testing.T) {
	for _, c := range []struct {
		want, have string
		ok         bool
	}{
		{"*", "3.11.2", true}, {"3.11.2", "3.11.2", true}, {"3", "3.11.2", true}, {"3.11", "3.11.2", true},
		{"3.x", "3.11.2", true}, {"3.10.0", "3.11.2", false}, {"3.11.2.1", "3.11.2", false}, {"4", "3.11.2", false},
	} {
		if got := versionMatches(c.want, c.have); got != c.ok {
			t.Errorf("versionMatches(%q, %q) = %v", c.want, c.have, got)
		}
	}
}

func TestPistonStage(t *testing.T) {
	timeout := &run.Result{Status: run.StatusTimeout, ExitCode: -1, Reason: "stopped: wall-clock limit", Stdout: []byte("a"), Stderr: []byte{}}
	st := pistonStage(timeout, nil)
	if st.Signal == nil || *st.Signal != "SIGKILL" || st.Code != nil || *st.Status != "TO" || string(bytes.Join(st.Output, nil)) != "a" {
		t.Errorf("timeout stage %+v", st)
	}
	exited := &run.Result{Status: run.StatusExited, ExitCode: 2, Stdout: []byte{}, Stderr: []byte{}}
	st = pistonStage(exited, []byte("x"))
	if st.Code == nil || *st.Code != 2 || st.Signal != nil || *st.Status != "RE" || string(bytes.Join(st.Output, nil)) != "x" {
		t.Errorf("exited stage %+v", st)
	}
	// Piston has no status for a run its caller ended: XX, no exit
	// code, the reason as the message.
	canceled := run.Canceled(context.Canceled, "it waited for a slot")
	st = pistonStage(canceled, nil)
	if st.Status == nil || *st.Status != "XX" || st.Code != nil || st.Signal != nil || st.Message == nil || *st.Message != canceled.Reason {
		t.Errorf("canceled stage %+v", st)
	}
}

func TestClassOf(t *testing.T) {
	if got := errdefs.HTTPStatus(classOf(errors.New("boom"))); got != 500 {
		t.Errorf("unknown error → %d", got)
	}
	if got := errdefs.HTTPStatus(classOf(fmt.Errorf("x: %w", limits.ErrInvalid))); got != 400 {
		t.Errorf("limits error → %d", got)
	}
}

// concurrentExec writes to stdout and stderr from two goroutines at once,
// as a run's two drains do.
type concurrentExec struct{ *fakeExec }

func (c concurrentExec) Run(ctx context.Context, p *run.Plan, s run.Stream) (*run.Result, error) {
	var wg sync.WaitGroup
	for _, w := range []io.Writer{s.Stdout, s.Stderr} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				w.Write([]byte("x"))
			}
		}()
	}
	wg.Wait()
	return &run.Result{ID: "r", Status: run.StatusOK, Runtime: "python", Stdout: []byte{}, Stderr: []byte{}}, nil
}

// TestStreamConcurrentFirstEvents: both streams may send the first event;
// the headers go out once (this crashed the daemon with concurrent map
// writes once).
func TestStreamConcurrentFirstEvents(t *testing.T) {
	s := newServer(concurrentExec{newFake()}, Config{})
	for i := 0; i < 20; i++ {
		rec := do(t, s, "POST", "/v1/runs?stream=1", `{"runtime":"python","code":"x"}`)
		if rec.Code != 200 || strings.Count(rec.Body.String(), "\n") != 101 {
			t.Fatalf("%d, %d lines", rec.Code, strings.Count(rec.Body.String(), "\n"))
		}
	}
}
