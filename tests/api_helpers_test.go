package tests

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/testenv"
)

// The API tests (api_test.go, piston_test.go) start the real sandboxd
// binary on a loopback port and drive it over HTTP, as a service would.
//
// Each test's daemons get their own state directory under /run (not
// t.TempDir(): the sandbox's host uids must traverse it, and /tmp's parents
// may not let them), so their runs are apart from every other test's. The
// cgroup parent is shared ("sandboxd"), as are the sandbox's host uids. The
// suite-wide check in TestMain (leaks(), host_test.go) sees every cgroup,
// workspace mount and sandbox process, but only the run directories of
// /run/sandboxd; so the state directory's cleanup checks what its daemons'
// runs left (apiLeaks) before it removes it. None of the API tests runs in
// parallel with another test of the package: leaks() would take a live run
// of a daemon for a leftover.

// sandboxd is the path of the daemon binary TestMain built (or SANDBOXD_BIN).
var sandboxd string

// buildSandboxd builds ./cmd/sandboxd for the API tests, or takes the
// binary named by SANDBOXD_BIN (for instance one built with -race:
// `go build -race -o /tmp/sandboxd ./cmd/sandboxd`). It returns what removes
// the build.
func buildSandboxd(root string) (func(), error) {
	if prebuilt := os.Getenv("SANDBOXD_BIN"); prebuilt != "" {
		p, err := filepath.Abs(prebuilt)
		if err != nil {
			return nil, fmt.Errorf("SANDBOXD_BIN: %w", err)
		}
		sandboxd = p
		return func() {}, nil
	}
	if os.Getenv("SANDBOXCTL_BIN") != "" {
		// A prebuilt sandboxctl is tested as it is; without a prebuilt
		// daemon to go with it, the API tests skip (requireDaemon).
		return func() {}, nil
	}
	dir, err := os.MkdirTemp("", "sandboxd-e2e-")
	if err != nil {
		return nil, err
	}
	out := filepath.Join(dir, "sandboxd")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-buildvcs=false", "-o", out, "./cmd/sandboxd")
	build.Dir = root
	if b, err := build.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("go build ./cmd/sandboxd: %w\n%s", err, b)
	}
	if err := buildInit(ctx, root, dir); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	sandboxd = out
	return func() { os.RemoveAll(dir) }, nil
}

// requireDaemon skips where the sandbox cannot run, or no daemon binary is
// at hand.
func requireDaemon(t *testing.T) {
	t.Helper()
	requireSandbox(t)
	if sandboxd == "" {
		t.Skip("requires a sandboxd binary: SANDBOXCTL_BIN is set without SANDBOXD_BIN")
	}
}

// ---------------------------------------------------------------------------
// Starting and stopping the daemon

// daemon is one running sandboxd serve.
type daemon struct {
	url      string // http://127.0.0.1:PORT
	addr     string // 127.0.0.1:PORT
	stateDir string
	token    string
	cmd      *exec.Cmd
	log      *syncBuffer
	exited   chan struct{} // closed once the process has been waited for
	exitErr  error
	// killed is set when a test SIGKILLed the daemon on purpose: its
	// cleanup does not ask for a clean exit then.
	killed bool
	http   *http.Client
}

// daemonConfig says how to start a daemon. The zero value is a daemon on a
// fresh state dir with no token.
type daemonConfig struct {
	// args are extra flags of `sandboxd serve`; they come after the
	// harness's own (--listen, --state-dir, --log-format), so they win.
	args []string
	// stateDir reuses a state dir (from newStateDir); empty makes one.
	stateDir string
	// token, when set, is written to a file passed as --token-file; the
	// daemon's helpers send it unless a request sets Authorization itself.
	token string
	// env is added to the daemon's environment (which never has the
	// test's own SANDBOXD_TOKEN, if any).
	env []string
	// listenHost is the host of --listen (default 127.0.0.1); the tests
	// reach the daemon on 127.0.0.1 whatever it is.
	listenHost string
	// files are the daemon's fds from 3 on, as exec.Cmd.ExtraFiles.
	files []*os.File
}

// syncBuffer is a bytes.Buffer safe for the daemon's output goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newStateDir makes a state directory under /run for one test's daemons.
// Its cleanup (registered first, so it runs after the daemons' stop) fails
// the test if a run left anything in it, and removes it when clean.
func newStateDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/run", "sandboxd-apitest-")
	if err != nil {
		t.Fatal(err)
	}
	// 0711 as sandboxd makes its own: the sandbox's uids only traverse.
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		defer func() {
			stateDirs.Lock()
			delete(stateDirs.daemons, dir)
			stateDirs.Unlock()
		}()
		if left := waitAPILeaks(dir, 5*time.Second); len(left) > 0 {
			t.Errorf("after the daemon stopped, its runs left state behind (kept %s for inspection):", dir)
			for _, l := range left {
				t.Errorf("  - %s", l)
			}
			return
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove state dir: %v", err)
		}
	})
	return dir
}

// freePort returns a loopback port nobody listened on a moment ago.
// `sandboxd serve` cannot listen on port 0 and say which port it got, so
// the test picks one; startDaemon retries if another process took it first.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

// startDaemon starts `sandboxd serve` on a free loopback port and waits
// until /healthz answers. Cleanup stops it with SIGTERM and fails the test
// unless it exits 0 within 5s (a deliberately SIGKILLed daemon excepted).
func startDaemon(t *testing.T, cfg daemonConfig) *daemon {
	t.Helper()
	if cfg.stateDir == "" {
		cfg.stateDir = newStateDir(t)
	}
	var tokenFile string
	if cfg.token != "" {
		tokenFile = filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(tokenFile, []byte(cfg.token+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if cfg.listenHost == "" {
		cfg.listenHost = "127.0.0.1"
	}
	for attempt := 1; ; attempt++ {
		port := freePort(t)
		// No session kernels started ahead unless a test asks for them
		// (its args come after and win): tests count sessions, sandboxes
		// and memory.
		args := []string{"serve", "--listen", net.JoinHostPort(cfg.listenHost, strconv.Itoa(port)), "--state-dir", cfg.stateDir, "--log-format", "text", "--session-ready", "0"}
		if tokenFile != "" {
			args = append(args, "--token-file", tokenFile)
		}
		args = append(args, cfg.args...)
		d, err := spawnDaemon(t, args, cfg, fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			return d
		}
		if attempt < 3 && strings.Contains(d.log.String(), "address already in use") {
			t.Logf("port %d was taken before the daemon bound it; trying another", port)
			continue
		}
		t.Fatalf("%v\ndaemon output:\n%s", err, tail([]byte(d.log.String())))
	}
}

// spawnDaemon starts the daemon with args and waits for /healthz. On error
// the returned daemon (never nil) has exited, and its log says why.
func spawnDaemon(t *testing.T, args []string, cfg daemonConfig, addr string) (*daemon, error) {
	t.Helper()
	d := &daemon{
		addr:     addr,
		url:      "http://" + addr,
		stateDir: cfg.stateDir,
		token:    cfg.token,
		log:      &syncBuffer{},
		exited:   make(chan struct{}),
		http:     &http.Client{Timeout: 90 * time.Second},
	}
	d.cmd = exec.Command(sandboxd, args...)
	d.cmd.Env = append(daemonEnv(), cfg.env...)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	d.cmd.ExtraFiles = cfg.files
	// A test binary killed before its cleanup (a timeout, ^C) takes its
	// daemons with it: SIGTERM, so they still shut down cleanly.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := d.cmd.Start(); err != nil {
		close(d.exited)
		return d, fmt.Errorf("start sandboxd: %w", err)
	}
	go func() {
		d.exitErr = d.cmd.Wait()
		close(d.exited)
	}()
	stateDirs.Lock()
	stateDirs.daemons[d.stateDir] = append(stateDirs.daemons[d.stateDir], d)
	stateDirs.Unlock()
	if err := d.waitHealthy(15 * time.Second); err != nil {
		_ = d.cmd.Process.Kill()
		<-d.exited
		return d, err
	}
	t.Cleanup(func() { d.cleanup(t) })
	return d, nil
}

// daemonEnv is this process's environment without SANDBOXD_TOKEN: a
// daemon has a token only when its test gives it one.
func daemonEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SANDBOXD_TOKEN=") {
			env = append(env, kv)
		}
	}
	return env
}

// waitHealthy polls /healthz until it answers 200, the daemon exits or d
// passes.
func (d *daemon) waitHealthy(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	c := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-d.exited:
			return fmt.Errorf("sandboxd %s exited before it served: %v", strings.Join(d.cmd.Args[1:], " "), d.exitErr)
		default:
		}
		resp, err := c.Get(d.url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sandboxd did not answer /healthz within %s (last: %v)", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// signal sends sig to the daemon process.
func (d *daemon) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if sig == syscall.SIGKILL {
		d.killed = true
	}
	if err := d.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal sandboxd: %v", err)
	}
}

// wait waits up to timeout for the daemon to exit and returns its exit
// code (-1 if a signal ended it); ok is false if it is still running.
func (d *daemon) wait(timeout time.Duration) (code int, ok bool) {
	select {
	case <-d.exited:
		return d.cmd.ProcessState.ExitCode(), true
	case <-time.After(timeout):
		return 0, false
	}
}

// stop sends SIGTERM and fails the test unless the daemon exits 0 within
// timeout; it returns how long the exit took.
func (d *daemon) stop(t *testing.T, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	d.signal(t, syscall.SIGTERM)
	code, ok := d.wait(timeout)
	took := time.Since(start)
	if !ok {
		_ = d.cmd.Process.Kill()
		<-d.exited
		t.Errorf("sandboxd did not exit within %s of SIGTERM (killed)", timeout)
		return took
	}
	if code != 0 {
		t.Errorf("sandboxd exited %d after SIGTERM, want 0 (%v)", code, d.exitErr)
	}
	return took
}

func (d *daemon) cleanup(t *testing.T) {
	select {
	case <-d.exited:
	default:
		// Idle by now: it has nothing to wait for.
		d.stop(t, 5*time.Second)
	}
	if !d.killed {
		if code := d.cmd.ProcessState.ExitCode(); code != 0 && !t.Failed() {
			t.Errorf("sandboxd exited %d, want 0 (%v)", code, d.exitErr)
		}
	}
	log := d.log.String()
	if strings.Contains(log, "WARNING: DATA RACE") {
		t.Errorf("the race detector found a data race in sandboxd (SANDBOXD_BIN built with -race)")
	}
	if strings.Contains(log, "panic:") {
		t.Errorf("sandboxd panicked")
	}
	if t.Failed() {
		t.Logf("sandboxd %s output:\n%s", strings.Join(d.cmd.Args[1:], " "), tail([]byte(log)))
	}
}

// waitLog waits up to timeout for the daemon's output to match re (it
// reaches the test through a pipe, a moment after the daemon wrote it) and
// returns the match, or "".
func (d *daemon) waitLog(re *regexp.Regexp, timeout time.Duration) string {
	deadline := time.Now().Add(timeout)
	for {
		if m := re.FindString(d.log.String()); m != "" || time.Now().After(deadline) {
			return m
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ---------------------------------------------------------------------------
// Requests

// do sends a request with the daemon's token (unless hdr sets
// Authorization, even to "") and returns the response with its body read.
func (d *daemon) do(ctx context.Context, method, path string, body []byte, hdr http.Header) (*http.Response, []byte, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, d.url+path, r)
	if err != nil {
		return nil, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if d.token != "" {
		req.Header.Set("Authorization", "Bearer "+d.token)
	}
	for k, v := range hdr {
		req.Header[http.CanonicalHeaderKey(k)] = v
		if len(v) == 1 && v[0] == "" {
			req.Header.Del(k)
		}
	}
	resp, err := d.http.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

// request is do from the test's goroutine: a failure to get an answer at
// all fails the test. Every request is bounded by the client's timeout.
func (d *daemon) request(t *testing.T, method, path string, body []byte, hdr http.Header) (*http.Response, []byte) {
	t.Helper()
	resp, b, err := d.do(context.Background(), method, path, body, hdr)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp, b
}

// mustJSON marshals v for a request body.
func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// run posts req to /v1/runs and returns the result, decoded strictly; it
// fails the test on any answer but 200.
func (d *daemon) run(t *testing.T, req any) *result {
	t.Helper()
	resp, body := d.request(t, "POST", "/v1/runs", mustJSON(t, req), nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /v1/runs: %s, want 200:\n%s", resp.Status, body)
	}
	return decodeAPIResult(t, body)
}

func decodeAPIResult(t *testing.T, body []byte) *result {
	t.Helper()
	var r result
	if err := newStrictDecoder(body).Decode(&r); err != nil {
		t.Fatalf("the answer is not a result (%v):\n%s", err, tail(body))
	}
	return &r
}

// apiError is the JSON of every error answer, decoded strictly.
type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// wantAPIError fails the test unless the answer is status with a JSON error
// body of code; it returns the message.
func wantAPIError(t *testing.T, resp *http.Response, body []byte, status int, code string) string {
	t.Helper()
	if resp.StatusCode != status {
		t.Errorf("status = %s, want %d %s; body:\n%s", resp.Status, status, http.StatusText(status), tail(body))
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want application/json for an error", ct)
	}
	var e apiError
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		t.Errorf("the error body is not {\"error\":{\"code\",\"message\"}} (%v):\n%s", err, tail(body))
		return ""
	}
	if e.Error.Code != code {
		t.Errorf("error code = %q, want %q (message %q)", e.Error.Code, code, e.Error.Message)
	}
	if e.Error.Message == "" {
		t.Errorf("the error has no message")
	}
	return e.Error.Message
}

// pyRun is the short form of a run request.
func pyRun(code string, lim map[string]any) map[string]any {
	req := map[string]any{"runtime": "python", "code": code}
	if lim != nil {
		req["limits"] = lim
	}
	return req
}

// ---------------------------------------------------------------------------
// Streaming

// event is one NDJSON line of a streamed run, decoded strictly.
type event struct {
	Type    string
	Data    []byte
	Result  *result
	Error   *apiErrorDetail
	arrived time.Time
}

type apiErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

type wireEvent struct {
	Type     string          `json:"type"`
	Data     string          `json:"data"`
	Encoding string          `json:"encoding"`
	Result   json.RawMessage `json:"result"`
	Error    *apiErrorDetail `json:"error"`
}

func decodeEvent(line []byte) (event, error) {
	var w wireEvent
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return event{}, fmt.Errorf("event %q: %w", line, err)
	}
	ev := event{Type: w.Type, Error: w.Error}
	var err error
	switch w.Type {
	case "stdout", "stderr":
		if ev.Data, err = decodeText(w.Data, w.Encoding); err != nil {
			return ev, fmt.Errorf("event %q: %w", line, err)
		}
	case "result":
		ev.Result = new(result)
		if err := ev.Result.UnmarshalJSON(w.Result); err != nil {
			return ev, fmt.Errorf("result event: %w", err)
		}
	case "error":
		if w.Error == nil {
			return ev, fmt.Errorf("error event without an error: %q", line)
		}
	default:
		return ev, fmt.Errorf("event of unknown type %q: %q", w.Type, line)
	}
	return ev, nil
}

// eventReader reads a streamed answer line by line, noting when each
// event arrived.
type eventReader struct {
	r *bufio.Reader
}

func newEventReader(r io.Reader) *eventReader {
	return &eventReader{r: bufio.NewReaderSize(r, 64<<10)}
}

// next returns the next event, or io.EOF at the end of the stream.
func (er *eventReader) next() (event, error) {
	line, err := er.r.ReadBytes('\n')
	if len(line) == 0 && err != nil {
		return event{}, err
	}
	at := time.Now()
	if line[len(line)-1] != '\n' {
		return event{}, fmt.Errorf("the stream ended inside a line: %q (%v)", line, err)
	}
	ev, derr := decodeEvent(line)
	ev.arrived = at
	return ev, derr
}

// readStdout reads events until the stdout so far is want (a print may
// come in several chunks) and returns when the first of them arrived.
func (er *eventReader) readStdout(want string) (time.Time, error) {
	var got []byte
	var first time.Time
	for len(got) < len(want) {
		ev, err := er.next()
		if err != nil {
			return first, fmt.Errorf("after stdout %q: %w", got, err)
		}
		if ev.Type != "stdout" {
			return first, fmt.Errorf("after stdout %q: a %s event, want stdout %q", got, ev.Type, want)
		}
		if first.IsZero() {
			first = ev.arrived
		}
		got = append(got, ev.Data...)
	}
	if string(got) != want {
		return first, fmt.Errorf("stdout %q, want %q", got, want)
	}
	return first, nil
}

// streamRun posts req with ?stream=1 and returns the open response; the
// caller reads and closes its body. ctx bounds the whole exchange.
func (d *daemon) streamRun(ctx context.Context, req []byte, hdr http.Header, query string) (*http.Response, error) {
	if query == "" {
		query = "?stream=1"
	}
	hr, err := http.NewRequestWithContext(ctx, "POST", d.url+"/v1/runs"+query, bytes.NewReader(req))
	if err != nil {
		return nil, err
	}
	hr.Header.Set("Content-Type", "application/json")
	if d.token != "" {
		hr.Header.Set("Authorization", "Bearer "+d.token)
	}
	for k, v := range hdr {
		hr.Header[http.CanonicalHeaderKey(k)] = v
	}
	// No client timeout: a streamed run is bounded by ctx.
	return (&http.Client{}).Do(hr)
}

// ---------------------------------------------------------------------------
// Metrics

// metricsText fetches /metrics.
func (d *daemon) metricsText(t *testing.T) string {
	t.Helper()
	// A fresh connection each time, closed after: the scrape must not
	// itself hold a goroutine or an fd of the daemon's when counted.
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	req, err := http.NewRequest("GET", d.url+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	if d.token != "" {
		req.Header.Set("Authorization", "Bearer "+d.token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s %v\n%s", resp.Status, err, tail(b))
	}
	return string(b)
}

// sample is one line of the Prometheus text format.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

var sampleRE = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: \d+)?$`)
var labelRE = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)

// parseMetrics reads the samples of a Prometheus text exposition.
func parseMetrics(t *testing.T, text string) []sample {
	t.Helper()
	var out []sample
	for _, line := range strings.Split(text, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		m := sampleRE.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("/metrics line is not in the text format: %q", line)
			continue
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			t.Errorf("/metrics line has a bad value: %q", line)
			continue
		}
		s := sample{name: m[1], labels: map[string]string{}, value: v}
		for _, l := range labelRE.FindAllStringSubmatch(m[2], -1) {
			s.labels[l[1]] = l[2]
		}
		out = append(out, s)
	}
	return out
}

// metric sums the samples of name whose labels include want (name=value
// pairs); found is false when there is no such sample.
func metric(samples []sample, name string, want ...string) (sum float64, found bool) {
	for _, s := range samples {
		if s.name != name {
			continue
		}
		match := true
		for i := 0; i+1 < len(want); i += 2 {
			if s.labels[want[i]] != want[i+1] {
				match = false
			}
		}
		if match {
			sum += s.value
			found = true
		}
	}
	return sum, found
}

// gauge reads one metric of the daemon now; it fails the test if absent.
func (d *daemon) gauge(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	v, ok := metric(parseMetrics(t, d.metricsText(t)), name, labels...)
	if !ok {
		t.Fatalf("/metrics has no %s%v", name, labels)
	}
	return v
}

// waitGauge polls a metric until cond holds or timeout passes.
func (d *daemon) waitGauge(t *testing.T, timeout time.Duration, name string, cond func(float64) bool) (float64, bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		v := d.gauge(t, name)
		if cond(v) || time.Now().After(deadline) {
			return v, cond(v)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ---------------------------------------------------------------------------
// What a daemon's runs leave on the host

// stateDirs records the daemons started on each state dir, so that its
// leak check knows the ids of its runs from their logs.
var stateDirs = struct {
	sync.Mutex
	daemons map[string][]*daemon
}{daemons: map[string][]*daemon{}}

var runIDInLog = regexp.MustCompile(`\b(?:id|run)=([0-9a-f]{16})\b`)

// stateRunIDs is every run id of stateDir's daemons: the runs they logged
// (one line per run, and each sweep) and the run directories there now.
func stateRunIDs(stateDir string) map[string]bool {
	ids := map[string]bool{}
	stateDirs.Lock()
	for _, d := range stateDirs.daemons[stateDir] {
		for _, m := range runIDInLog.FindAllStringSubmatch(d.log.String(), -1) {
			ids[m[1]] = true
		}
	}
	stateDirs.Unlock()
	if ents, err := os.ReadDir(filepath.Join(stateDir, "runs")); err == nil {
		for _, e := range ents {
			ids[e.Name()] = true
		}
	}
	return ids
}

// apiLeaks lists what the runs of stateDir's daemons left on the host:
// run directories and workspace mounts in stateDir, and cgroups and
// processes of their run ids. It is scoped to those runs, so other
// sandboxes on the host, other engineers' tests included, do not count;
// TestMain's final check (leaks() in host_test.go) looks at the whole host
// but takes a run whose lock is held, in any state dir, for live. Call it
// when no run of stateDir is live.
func apiLeaks(stateDir string) []string {
	var out []string
	ids := stateRunIDs(stateDir)
	held := heldInodes()
	ents, err := os.ReadDir(filepath.Join(stateDir, "runs"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		out = append(out, "state dir: "+err.Error())
	}
	for _, e := range ents {
		dir := filepath.Join(stateDir, "runs", e.Name())
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(dir, "lock"), &st); err == nil && held[st.Ino] {
			out = append(out, "run directory of a live run (lock held): "+dir)
			continue
		}
		out = append(out, "run directory: "+dir)
	}
	for _, m := range workMounts() {
		if strings.HasPrefix(m, stateDir+"/") {
			out = append(out, "workspace mount: "+m)
		}
	}
	for _, cg := range runCgroups("") {
		if i := strings.Index(cg, "/sandboxd/"); i >= 0 && ids[runIDOfCgroup(cg[i:])] {
			out = append(out, "cgroup: "+cg)
		}
	}
	for _, pid := range allPids() {
		if p, ok := readProc(pid); ok && ids[runIDOfCgroup(p.cgroup)] {
			out = append(out, "process: "+p.String())
		}
	}
	return out
}

// waitAPILeaks polls apiLeaks until it is empty or d passes.
func waitAPILeaks(stateDir string, d time.Duration) []string {
	deadline := time.Now().Add(d)
	for {
		l := apiLeaks(stateDir)
		if len(l) == 0 || time.Now().After(deadline) {
			return l
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// runLeftovers lists what run id left: its directory in stateDir, its
// cgroups, its workspace mounts and its processes.
func runLeftovers(stateDir, id string) []string {
	var out []string
	dir := filepath.Join(stateDir, "runs", id)
	if _, err := os.Lstat(dir); err == nil {
		out = append(out, "run directory "+dir)
	}
	for _, cg := range runCgroups(id) {
		out = append(out, "cgroup "+cg)
	}
	for _, m := range workMounts() {
		if strings.HasPrefix(m, dir+"/") || m == dir {
			out = append(out, "workspace mount "+m)
		}
	}
	for _, p := range runProcs(id) {
		out = append(out, "process "+p.String())
	}
	return out
}

// runToken gives a run a unique variable in its environment, inherited by
// every process it starts, so the test can find them on the host with
// tokenProcs.
func runToken() string { return "SBX_TOKEN_" + randomHex(8) }

// waitRunProcs waits until a process of the run carrying token is on the
// host and returns the run's id (from its cgroup).
func waitRunProcs(t *testing.T, token string) string {
	t.Helper()
	procs := waitFor(t, 15*time.Second, func() []hostProc { return tokenRunProcs(token) })
	if len(procs) == 0 {
		t.Fatalf("the sandboxed program never showed up on the host")
	}
	id := runIDOfCgroup(procs[0].cgroup)
	if id == "" {
		t.Fatalf("cannot tell the run id from the program's cgroup %q", procs[0].cgroup)
	}
	return id
}

// requireNPMClient stops the test (testenv.MissingNPMClient) unless node
// and the npm package pkg installed in tests/dir (by `npm ci --prefix
// tests/dir`) are at hand; it returns node's path and dir's absolute path.
func requireNPMClient(t *testing.T, dir, pkg string) (node, abs string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		testenv.MissingNPMClient(t, "tests/"+dir, "no node on PATH")
	}
	abs, err = filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(abs, "node_modules", pkg, "package.json")); err != nil {
		testenv.MissingNPMClient(t, "tests/"+dir, "tests/"+dir+"/node_modules/"+pkg+" is missing")
	}
	return node, abs
}
