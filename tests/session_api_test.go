package tests

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/testenv"
)

// The end-to-end tests of the session API (/v1/sessions): a persistent
// Python kernel per session in the real daemon, its cells, its workspace
// files, its limits, and what stays apart between sessions and tokens.

// sessionInfo is a session as the API describes it, decoded strictly.
type sessionInfo struct {
	ID          string          `json:"id"`
	Runtime     string          `json:"runtime"`
	Version     string          `json:"version"`
	State       string          `json:"state"`
	Reason      string          `json:"reason"`
	Cells       int             `json:"cells"`
	Created     time.Time       `json:"created_at"`
	LastUsed    time.Time       `json:"last_used_at"`
	ExpiresAt   time.Time       `json:"expires_at"`
	IdleTimeout string          `json:"idle_timeout"`
	CPUBudget   string          `json:"cpu_budget"`
	CPUUsed     string          `json:"cpu_used"`
	Limits      json.RawMessage `json:"limits"`
}

// cellResult is a cell's result, decoded strictly from its wire form.
type cellResult struct {
	Session         string
	Cell            int
	Status          string
	Reason          string
	Stdout, Stderr  []byte
	StdoutTruncated bool
	StderrTruncated bool
	Result          map[string]string
	Error           *cellError
	Display         []map[string]string
	WallTime        time.Duration
	CPUTime         time.Duration
	State           string
}

type cellError struct {
	Name      string `json:"name"`
	Value     string `json:"value"`
	Traceback string `json:"traceback"`
}

type wireCellResult struct {
	Session         string              `json:"session_id"`
	Cell            int                 `json:"cell"`
	Status          string              `json:"status"`
	Reason          string              `json:"reason"`
	Stdout          string              `json:"stdout"`
	StdoutEncoding  string              `json:"stdout_encoding"`
	Stderr          string              `json:"stderr"`
	StderrEncoding  string              `json:"stderr_encoding"`
	StdoutTruncated bool                `json:"stdout_truncated"`
	StderrTruncated bool                `json:"stderr_truncated"`
	Result          map[string]string   `json:"result"`
	Error           *cellError          `json:"error"`
	Display         []map[string]string `json:"display"`
	WallTimeMS      float64             `json:"wall_time_ms"`
	CPUTimeMS       float64             `json:"cpu_time_ms"`
	State           string              `json:"state"`
}

func (c *cellResult) UnmarshalJSON(b []byte) error {
	var w wireCellResult
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return err
	}
	*c = cellResult{
		Session: w.Session, Cell: w.Cell, Status: w.Status, Reason: w.Reason,
		StdoutTruncated: w.StdoutTruncated, StderrTruncated: w.StderrTruncated,
		Result: w.Result, Error: w.Error, Display: w.Display,
		WallTime: time.Duration(w.WallTimeMS * float64(time.Millisecond)),
		CPUTime:  time.Duration(w.CPUTimeMS * float64(time.Millisecond)),
		State:    w.State,
	}
	var err error
	if c.Stdout, err = decodeText(w.Stdout, w.StdoutEncoding); err != nil {
		return fmt.Errorf("stdout: %w", err)
	}
	if c.Stderr, err = decodeText(w.Stderr, w.StderrEncoding); err != nil {
		return fmt.Errorf("stderr: %w", err)
	}
	return nil
}

func (c *cellResult) String() string {
	e := ""
	if c.Error != nil {
		e = c.Error.Name + ": " + c.Error.Value + "\n" + c.Error.Traceback
	}
	return fmt.Sprintf("cell %d status=%s state=%s reason=%q result=%q wall=%s cpu=%s\n--- stdout:\n%s\n--- stderr:\n%s\n--- error:\n%s",
		c.Cell, c.Status, c.State, c.Reason, c.Result["text/plain"], c.WallTime, c.CPUTime, tail(c.Stdout), tail(c.Stderr), e)
}

// createSession creates a session from spec and returns it; it fails the
// test on any answer but 201 with a Location.
func (d *daemon) createSession(t *testing.T, spec map[string]any) sessionInfo {
	t.Helper()
	resp, body := d.request(t, "POST", "/v1/sessions", mustJSON(t, spec), nil)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /v1/sessions: %s, want 201:\n%s", resp.Status, tail(body))
	}
	info := decodeSessionInfo(t, body)
	if loc := resp.Header.Get("Location"); loc != "/v1/sessions/"+info.ID {
		t.Errorf("Location = %q, want /v1/sessions/%s", loc, info.ID)
	}
	want := "python"
	if rt, ok := spec["runtime"].(string); ok {
		want = rt
	}
	if info.State != "idle" || info.Runtime != want || info.Version == "" {
		t.Errorf("a new session: %+v", info)
	}
	return info
}

func decodeSessionInfo(t *testing.T, body []byte) sessionInfo {
	t.Helper()
	var info sessionInfo
	if err := newStrictDecoder(body).Decode(&info); err != nil || info.ID == "" {
		t.Fatalf("the answer is not a session (%v):\n%s", err, tail(body))
	}
	return info
}

// sessionGet fetches a session's description.
func (d *daemon) sessionGet(t *testing.T, id string) sessionInfo {
	t.Helper()
	resp, body := d.request(t, "GET", "/v1/sessions/"+id, nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET session: %s\n%s", resp.Status, tail(body))
	}
	return decodeSessionInfo(t, body)
}

// execCell runs code in session id and returns its result; it fails the
// test on any answer but 200.
func (d *daemon) execCell(t *testing.T, id, code string) *cellResult {
	t.Helper()
	resp, body := d.request(t, "POST", "/v1/sessions/"+id+"/exec", mustJSON(t, map[string]any{"code": code}), nil)
	return decodeCell(t, resp, body)
}

func decodeCell(t *testing.T, resp *http.Response, body []byte) *cellResult {
	t.Helper()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("exec: %s, want 200:\n%s", resp.Status, tail(body))
	}
	var c cellResult
	if err := newStrictDecoder(body).Decode(&c); err != nil {
		t.Fatalf("the answer is not a cell result (%v):\n%s", err, tail(body))
	}
	return &c
}

// okCell runs code and fails the test unless it ended ok with the session
// idle.
func (d *daemon) okCell(t *testing.T, id, code string) *cellResult {
	t.Helper()
	c := d.execCell(t, id, code)
	if c.Status != "ok" || c.State != "idle" {
		t.Fatalf("cell %q: %s", code, c)
	}
	return c
}

// sessionProcsToken gives a session a unique environment variable that
// every process of its sandbox inherits, and returns it with the env to
// put in the spec; tokenProcs finds them on the host.
func sessionProcsToken() (string, map[string]string) {
	token := runToken()
	return token, map[string]string{token: "1"}
}

// sessionRunID is the run id (the sandbox) of the session whose processes
// carry token.
func sessionRunID(t *testing.T, token string) string {
	t.Helper()
	return waitRunProcs(t, token)
}

// waitProcCount polls until at least n processes carry token, or d
// passes; it returns those it found.
func waitProcCount(token string, n int, d time.Duration) []hostProc {
	deadline := time.Now().Add(d)
	for {
		procs := tokenProcs(token)
		if len(procs) >= n || time.Now().After(deadline) {
			return procs
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// requireSessionGone fails the test if anything of the session's sandbox
// (run id, processes carrying token) is still on the host.
func requireSessionGone(t *testing.T, d *daemon, token, runID string) {
	t.Helper()
	if left := waitGone(15*time.Second, func() []hostProc { return tokenProcs(token) }); len(left) > 0 {
		t.Errorf("processes of the session are left: %v", left)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		left := runLeftovers(d.stateDir, runID)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("the session's sandbox %s left: %v", runID, left)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

const csvData = "city,temp\nOslo,3\nLima,19\nCairo,28\n"

// TestSessionCells: one kernel, cell after cell: variables, imports and
// files persist; a trailing expression is the result; an exception is an
// error with a traceback and the session goes on.
func TestSessionCells(t *testing.T) {
	requireDaemon(t)
	d := startDaemon(t, daemonConfig{})
	token, env := sessionProcsToken()
	s := d.createSession(t, map[string]any{
		"runtime": "python", "env": env,
		"files": []map[string]any{{"name": "data/cities.csv", "content": csvData}},
	})

	c := d.okCell(t, s.ID, "import csv\nrows = list(csv.DictReader(open('data/cities.csv')))\nx = 41\nprint(len(rows))")
	if string(c.Stdout) != "3\n" || c.Result != nil || c.Cell != 1 || c.Session != s.ID {
		t.Errorf("first cell: %s", c)
	}
	if c := d.okCell(t, s.ID, "x + 1"); c.Result["text/plain"] != "42" || len(c.Stdout) != 0 {
		t.Errorf("a trailing expression: %s", c)
	}
	// The directory does not exist yet: the cell fails, as Python does.
	if c := d.execCell(t, s.ID, "import json\nwith open('out/state.json', 'w') as f: json.dump({}, f)"); c.Status != "error" || c.Error == nil || c.Error.Name != "FileNotFoundError" || c.State != "idle" {
		t.Errorf("a cell that opens a file in a missing directory: %s", c)
	}
	c = d.execCell(t, s.ID, "import os\nos.makedirs('out', exist_ok=True)\nwith open('out/state.json', 'w') as f: json.dump({'hottest': max(rows, key=lambda r: int(r['temp']))['city']}, f)\n'written'")
	if c.Status != "ok" || c.Result["text/plain"] != "'written'" {
		t.Fatalf("writing a file: %s", c)
	}
	if c := d.okCell(t, s.ID, "json.load(open('out/state.json'))['hottest']"); c.Result["text/plain"] != "'Cairo'" {
		t.Errorf("an import, a variable and a file of earlier cells: %s", c)
	}

	c = d.execCell(t, s.ID, "def f(n):\n    return 10 / n\nprint('before')\nf(0)")
	if c.Status != "error" || c.State != "idle" || c.Error == nil || c.Error.Name != "ZeroDivisionError" {
		t.Fatalf("an exception: %s", c)
	}
	if !strings.Contains(c.Error.Traceback, "ZeroDivisionError") || !strings.Contains(c.Error.Traceback, "in f") || string(c.Stdout) != "before\n" {
		t.Errorf("the exception's traceback and output: %s", c)
	}
	if c := d.okCell(t, s.ID, "x, len(rows)"); c.Result["text/plain"] != "(41, 3)" {
		t.Errorf("after an exception: %s", c)
	}
	if c := d.execCell(t, s.ID, "undefined_name"); c.Status != "error" || c.Error == nil || c.Error.Name != "NameError" {
		t.Errorf("a NameError: %s", c)
	}
	if c := d.execCell(t, s.ID, "def broken(:\n  pass"); c.Status != "error" || c.Error == nil || c.Error.Name != "SyntaxError" || c.State != "idle" {
		t.Errorf("a SyntaxError: %s", c)
	}
	if c := d.okCell(t, s.ID, ""); c.Result != nil || len(c.Stdout) != 0 {
		t.Errorf("an empty cell: %s", c)
	}
	if _, err := os.Stat("/usr/lib/python3/dist-packages/pandas"); err == nil {
		c := d.okCell(t, s.ID, "import pandas as pd\ndf = pd.read_csv('data/cities.csv')\nint(df['temp'].sum())")
		if c.Result["text/plain"] != "50" {
			t.Errorf("pandas: %s", c)
		}
		if c := d.okCell(t, s.ID, "df.shape"); c.Result["text/plain"] != "(3, 2)" {
			t.Errorf("a DataFrame kept between cells: %s", c)
		}
	} else {
		t.Log("python3-pandas is not installed: the pandas cells are skipped")
	}
	info := d.sessionGet(t, s.ID)
	if info.State != "idle" || info.Cells < 10 || !info.ExpiresAt.After(info.LastUsed) {
		t.Errorf("the session after its cells: %+v", info)
	}

	// The log has one line per cell, with its session.
	if d.waitLog(regexp.MustCompile(`msg=cell session=`+regexp.QuoteMeta(s.ID)+` .*status=error`), 5*time.Second) == "" {
		t.Errorf("the daemon logged no cell line for the session")
	}
	runID := sessionRunID(t, token)
	resp, body := d.request(t, "DELETE", "/v1/sessions/"+s.ID, nil, nil)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE: %s\n%s", resp.Status, body)
	}
	requireSessionGone(t, d, token, runID)
}

// TestSessionMatplotlib: a figure shown in a cell comes back as display
// data with a PNG of it.
func TestSessionMatplotlib(t *testing.T) {
	requireDaemon(t)
	if _, err := os.Stat("/usr/lib/python3/dist-packages/matplotlib"); err != nil {
		testenv.MissingFile(t, "/usr/lib/python3/dist-packages/matplotlib")
	}
	d := startDaemon(t, daemonConfig{})
	s := d.createSession(t, map[string]any{"limits": map[string]any{"timeout": "60s", "cpu_time": "60s"}})
	resp, body := d.request(t, "POST", "/v1/sessions/"+s.ID+"/exec", mustJSON(t, map[string]any{
		"code": "import matplotlib; import matplotlib.pyplot as plt; plt.plot([1,2,3]); plt.show()", "timeout": "60s",
	}), nil)
	c := decodeCell(t, resp, body)
	if c.Status != "ok" || len(c.Display) != 1 {
		t.Fatalf("a figure: %s\n%d displays", c, len(c.Display))
	}
	b64, ok := c.Display[0]["image/png"]
	if !ok {
		t.Fatalf("the display has no image/png: %v", keys(c.Display[0]))
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatalf("image/png is not base64: %v", err)
	}
	img, err := png.Decode(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("image/png is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() <= 100 || b.Dy() <= 100 {
		t.Errorf("the figure is %dx%d, want more than 100x100", b.Dx(), b.Dy())
	}
	// The figure was closed with its cell: the next one shows nothing.
	if c := d.okCell(t, s.ID, "len(plt.get_fignums())"); c.Result["text/plain"] != "0" || len(c.Display) != 0 {
		t.Errorf("after the figure's cell: %s", c)
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// cellEvent is one NDJSON line of a streamed cell, decoded strictly.
type cellEvent struct {
	Type    string
	Data    []byte
	Display map[string]string
	Result  *cellResult
	Error   *apiErrorDetail
	arrived time.Time
}

func decodeCellEvent(line []byte) (cellEvent, error) {
	var w struct {
		Type     string            `json:"type"`
		Data     string            `json:"data"`
		Encoding string            `json:"encoding"`
		Display  map[string]string `json:"display"`
		Result   json.RawMessage   `json:"result"`
		Error    *apiErrorDetail   `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return cellEvent{}, fmt.Errorf("event %q: %w", line, err)
	}
	ev := cellEvent{Type: w.Type, Display: w.Display, Error: w.Error, arrived: time.Now()}
	var err error
	switch w.Type {
	case "stdout", "stderr":
		ev.Data, err = decodeText(w.Data, w.Encoding)
	case "display":
		if w.Display == nil {
			err = errors.New("a display event without data")
		}
	case "result":
		ev.Result = new(cellResult)
		err = ev.Result.UnmarshalJSON(w.Result)
	case "error":
		if w.Error == nil {
			err = errors.New("an error event without an error")
		}
	default:
		err = fmt.Errorf("unknown event type %q", w.Type)
	}
	if err != nil {
		return ev, fmt.Errorf("event %q: %w", line, err)
	}
	return ev, nil
}

// streamCell posts a cell with ?stream=1 and returns the open response.
func (d *daemon) streamCell(ctx context.Context, id string, req []byte, hdr http.Header, query string) (*http.Response, error) {
	hr, err := http.NewRequestWithContext(ctx, "POST", d.url+"/v1/sessions/"+id+"/exec"+query, bytes.NewReader(req))
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
	return (&http.Client{}).Do(hr)
}

// TestSessionStreaming: a streamed cell sends its output and displays as
// they happen, then its result; a dead session is still a plain 409.
func TestSessionStreaming(t *testing.T) {
	requireDaemon(t)
	d := startDaemon(t, daemonConfig{})
	s := d.createSession(t, map[string]any{})
	code := "import time, sys\nfor i in range(3):\n    print('tick', i, flush=True)\n    time.sleep(0.4)\ndisplay('shown')\nprint('err', file=sys.stderr, flush=True)\n'done'"
	for _, how := range []struct {
		query string
		hdr   http.Header
	}{{"?stream=1", nil}, {"", http.Header{"Accept": {"application/x-ndjson"}}}} {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		resp, err := d.streamCell(ctx, s.ID, mustJSON(t, map[string]any{"code": code}), how.hdr, how.query)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			cancel()
			t.Fatalf("%s %s: %s\n%s", how.query, how.hdr, resp.Status, b)
		}
		var events []cellEvent
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			ev, err := decodeCellEvent(sc.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			events = append(events, ev)
		}
		resp.Body.Close()
		cancel()
		if err := sc.Err(); err != nil {
			t.Fatalf("reading the stream: %v", err)
		}
		var stdout, stderr []byte
		var firstOut, last cellEvent
		displays, results := 0, 0
		for i, ev := range events {
			switch ev.Type {
			case "stdout":
				if firstOut.Type == "" {
					firstOut = ev
				}
				stdout = append(stdout, ev.Data...)
			case "stderr":
				stderr = append(stderr, ev.Data...)
			case "display":
				displays++
				if ev.Display["text/plain"] != "'shown'" {
					t.Errorf("display event %v", ev.Display)
				}
			case "result":
				results++
				if i != len(events)-1 {
					t.Errorf("the result is event %d of %d", i+1, len(events))
				}
			case "error":
				t.Errorf("an error event: %+v", ev.Error)
			}
			last = ev
		}
		if results != 1 || last.Result == nil {
			t.Fatalf("%d results; events: %+v", results, events)
		}
		r := last.Result
		if string(stdout) != "tick 0\ntick 1\ntick 2\n" || string(stderr) != "err\n" || displays != 1 {
			t.Errorf("streamed stdout %q stderr %q, %d displays", stdout, stderr, displays)
		}
		if r.Status != "ok" || string(r.Stdout) != string(stdout) || r.Result["text/plain"] != "'done'" || len(r.Display) != 1 {
			t.Errorf("the result: %s", r)
		}
		// The first tick came while the cell still ran (it takes 1.2s).
		if gap := last.arrived.Sub(firstOut.arrived); gap < 500*time.Millisecond {
			t.Errorf("the first output came only %s before the result: not streamed", gap)
		}
	}

	// A streamed cell in a dead session: a plain JSON 409.
	d.execCell(t, s.ID, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
	resp, err := d.streamCell(context.Background(), s.ID, []byte(`{"code":"1"}`), nil, "?stream=1")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	wantAPIError(t, resp, b, http.StatusConflict, "conflict")
}

// TestSessionDisconnect: a client that goes away mid-cell interrupts the
// cell, and the session serves the next one.
func TestSessionDisconnect(t *testing.T) {
	requireDaemon(t)
	d := startDaemon(t, daemonConfig{})
	s := d.createSession(t, map[string]any{"limits": map[string]any{"timeout": "60s"}})
	for _, query := range []string{"", "?stream=1"} {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			resp, err := d.streamCell(ctx, s.ID, []byte(`{"code":"import time\nprint('started', flush=True)\ntime.sleep(50)"}`), nil, query)
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			done <- err
		}()
		// Wait until the cell runs, then go away.
		deadline := time.Now().Add(30 * time.Second)
		for d.sessionGet(t, s.ID).State != "busy" {
			if time.Now().After(deadline) {
				t.Fatalf("the cell never ran")
			}
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(200 * time.Millisecond)
		cancel()
		<-done
		start := time.Now()
		c := d.okCell(t, s.ID, "'next'")
		if c.Result["text/plain"] != "'next'" {
			t.Errorf("after a client went away: %s", c)
		}
		if took := time.Since(start); took > 20*time.Second {
			t.Errorf("the next cell took %s: the abandoned one was not interrupted", took)
		}
	}
	if d.waitLog(regexp.MustCompile(`msg=cell session=`+regexp.QuoteMeta(s.ID)+` .*status=canceled .*reason="the client went away`), 5*time.Second) == "" {
		t.Errorf("no cell was logged canceled, interrupted by the client going away")
	}
}

// TestSessionTimeouts: a cell past its timeout is interrupted and the
// session goes on; a cell that ignores the interrupt kills the kernel, and
// the dead session says why (409), for its files too.
func TestSessionTimeouts(t *testing.T) {
	requireDaemon(t)
	d := startDaemon(t, daemonConfig{})
	token, env := sessionProcsToken()
	s := d.createSession(t, map[string]any{"env": env})
	d.okCell(t, s.ID, "kept = 'still here'\nopen('kept.txt','w').write(kept)")

	resp, body := d.request(t, "POST", "/v1/sessions/"+s.ID+"/exec", []byte(`{"code":"import time; time.sleep(30)","timeout":"300ms"}`), nil)
	c := decodeCell(t, resp, body)
	if c.Status != "timeout" || c.State != "idle" || !strings.Contains(c.Reason, "300ms") {
		t.Fatalf("a cell past its timeout: %s", c)
	}
	if c.WallTime > 10*time.Second {
		t.Errorf("the interrupted cell took %s", c.WallTime)
	}
	if c := d.okCell(t, s.ID, "kept"); c.Result["text/plain"] != "'still here'" {
		t.Errorf("after a timeout: %s", c)
	}
	resp, body = d.request(t, "POST", "/v1/sessions/"+s.ID+"/exec", []byte(`{"code":"1","timeout":"1h"}`), nil)
	wantAPIError(t, resp, body, http.StatusBadRequest, "invalid_argument")

	runID := sessionRunID(t, token)
	resp, body = d.request(t, "POST", "/v1/sessions/"+s.ID+"/exec", mustJSON(t, map[string]any{
		"code": "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass", "timeout": "200ms",
	}), nil)
	c = decodeCell(t, resp, body)
	if c.Status != "timeout" || c.State != "dead" || !strings.Contains(c.Reason, "killed") {
		t.Fatalf("a cell that ignores the interrupt: %s", c)
	}
	if c.CPUTime < 100*time.Millisecond {
		t.Errorf("the killed cell's busy loop shows %s of CPU time", c.CPUTime)
	}
	resp, body = d.request(t, "POST", "/v1/sessions/"+s.ID+"/exec", []byte(`{"code":"kept"}`), nil)
	msg := wantAPIError(t, resp, body, http.StatusConflict, "conflict")
	if !strings.Contains(msg, "dead") {
		t.Errorf("exec in a dead session: %q", msg)
	}
	info := d.sessionGet(t, s.ID)
	// The reason is the cell's (its timeout and the kill that followed),
	// not the kill's alone.
	if info.State != "dead" || !strings.Contains(info.Reason, "200ms") || !strings.Contains(msg, info.Reason) {
		t.Errorf("the dead session: %+v; the 409 says %q", info, msg)
	}
	// The kernel and its sandbox's processes are gone, and so are its
	// files: a file request says why.
	if left := waitGone(15*time.Second, func() []hostProc { return runProcs(runID) }); len(left) > 0 {
		t.Errorf("the killed kernel's processes are left: %v", left)
	}
	resp, body = d.request(t, "GET", "/v1/sessions/"+s.ID+"/files/kept.txt", nil, nil)
	if msg := wantAPIError(t, resp, body, http.StatusConflict, "conflict"); !strings.Contains(msg, info.Reason) {
		t.Errorf("a dead session's file: %q; want why it died, %q", msg, info.Reason)
	}
	resp, body = d.request(t, "DELETE", "/v1/sessions/"+s.ID, nil, nil)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE a dead session: %s\n%s", resp.Status, body)
	}
	requireSessionGone(t, d, token, runID)
}

// TestSessionCPUBudget: a cell past its own CPU budget ends cpu_limit and
// the session lives, however many heavy cells it runs; a process a cell
// leaves spinning uses up the session's budget between cells, and the
// session dies with a reason naming it, which the next request gets as a
// 409. A bystander session of the same daemon goes on.
func TestSessionCPUBudget(t *testing.T) {
	requireDaemon(t)
	d := startDaemon(t, daemonConfig{})
	s := d.createSession(t, map[string]any{"cpu_budget": "3s", "limits": map[string]any{"cpu_time": "500ms", "timeout": "30s"}})
	bystander := d.createSession(t, map[string]any{})
	if s.CPUBudget != "3s" || bystander.CPUBudget != "10m0s" {
		t.Errorf("cpu_budget: %q asked 3s; %q by default", s.CPUBudget, bystander.CPUBudget)
	}
	for i := range 3 {
		if c := d.execCell(t, s.ID, "while True: pass"); c.Status != "cpu_limit" || c.State != "idle" {
			t.Fatalf("heavy cell %d: %s", i, c)
		}
	}
	d.okCell(t, s.ID, "import subprocess\np = subprocess.Popen(['/usr/bin/python3', '-c', 'while True: pass'])")
	var info sessionInfo
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if info = d.sessionGet(t, s.ID); info.State == "dead" || time.Now().After(deadline) {
			break
		}
	}
	if info.State != "dead" || !strings.Contains(info.Reason, "CPU budget of 3s") {
		t.Fatalf("after the spinner: %+v", info)
	}
	resp, body := d.request(t, "POST", "/v1/sessions/"+s.ID+"/exec", []byte(`{"code":"1"}`), nil)
	if msg := wantAPIError(t, resp, body, http.StatusConflict, "conflict"); !strings.Contains(msg, info.Reason) {
		t.Errorf("a cell after the budget: %q; want %q", msg, info.Reason)
	}
	if c := d.okCell(t, bystander.ID, "sum(range(10))"); c.Result["text/plain"] != "45" || c.State != "idle" {
		t.Errorf("the bystander: %s", c)
	}
	resp, body = d.request(t, "POST", "/v1/sessions", []byte(`{"cpu_budget":"2h"}`), nil)
	if msg := wantAPIError(t, resp, body, http.StatusBadRequest, "invalid_argument"); !strings.Contains(msg, "cpu_budget 2h") {
		t.Errorf("a budget above the maximum: %q", msg)
	}
}

// rawRequest sends target exactly as given (no client cleans or escapes
// it) and returns the answer with its body.
// TestSessionDeleteAndLeaks: deleting a session ends its kernel and
// everything it started, removes its sandbox, and its id is gone.
func TestSessionDeleteAndLeaks(t *testing.T) {
	requireDaemon(t)
	d := startDaemon(t, daemonConfig{})
	token, env := sessionProcsToken()
	s := d.createSession(t, map[string]any{"env": env})
	d.okCell(t, s.ID, "import subprocess\nbg = subprocess.Popen(['sleep', '1000'])\nopen('f.txt','w').write('x')")
	runID := sessionRunID(t, token)
	if procs := waitProcCount(token, 2, 15*time.Second); len(procs) < 2 {
		c := d.execCell(t, s.ID, "bg.pid, bg.poll()")
		t.Errorf("%d processes carry the session's token, want the kernel and its sleep: %v\nthe sleep: %s", len(procs), procs, c)
	}
	if v := d.gauge(t, "sandboxd_sessions_active"); v != 1 {
		t.Errorf("sandboxd_sessions_active = %v, want 1", v)
	}
	resp, body := d.request(t, "DELETE", "/v1/sessions/"+s.ID, nil, nil)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE: %s\n%s", resp.Status, body)
	}
	for _, r := range []struct{ method, path, body string }{
		{"GET", "", ""}, {"DELETE", "", ""}, {"POST", "/exec", `{"code":"1"}`},
		{"GET", "/files", ""}, {"GET", "/files/f.txt", ""}, {"PUT", "/files/g.txt", "x"}, {"DELETE", "/files/f.txt", ""},
	} {
		resp, body := d.request(t, r.method, "/v1/sessions/"+s.ID+r.path, []byte(r.body), nil)
		wantAPIError(t, resp, body, http.StatusNotFound, "not_found")
	}
	requireSessionGone(t, d, token, runID)
	if left := waitAPILeaks(d.stateDir, 10*time.Second); len(left) > 0 {
		t.Errorf("the daemon's state dir holds leftovers: %v", left)
	}
	if v := d.gauge(t, "sandboxd_sessions_active"); v != 0 {
		t.Errorf("sandboxd_sessions_active = %v after the delete", v)
	}
	if v, _ := metric(parseMetrics(t, d.metricsText(t)), "sandboxd_session_cells_total", "status", "ok"); v < 1 {
		t.Errorf("sandboxd_session_cells_total{status=ok} = %v", v)
	}
}

// TestSessionQuotaPerToken: each token holds at most its quota of
// sessions, and sees, runs and deletes only its own.
func TestSessionQuotaPerToken(t *testing.T) {
	requireDaemon(t)
	tokA, tokB := "tok-a-"+randomHex(8), "tok-b-"+randomHex(8)
	tokenFile := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokenFile, []byte("# two clients\n"+tokA+"\n"+tokB+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, daemonConfig{args: []string{"--token-file", tokenFile, "--max-sessions-per-token", "2"}})
	as := func(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }
	create := func(tok string) (*http.Response, []byte) {
		return d.request(t, "POST", "/v1/sessions", []byte(`{}`), as(tok))
	}

	var aIDs []string
	for i := 0; i < 2; i++ {
		resp, body := create(tokA)
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("A's session %d: %s\n%s", i+1, resp.Status, body)
		}
		aIDs = append(aIDs, decodeSessionInfo(t, body).ID)
	}
	resp, body := create(tokA)
	if msg := wantAPIError(t, resp, body, http.StatusTooManyRequests, "too_many_requests"); !strings.Contains(msg, "2") {
		t.Errorf("A's third session: %q should name the quota", msg)
	}
	resp, body = create(tokB)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("B's session while A is at its quota: %s\n%s", resp.Status, body)
	}
	bID := decodeSessionInfo(t, body).ID
	resp, body = d.request(t, "POST", "/v1/sessions", []byte(`{}`), http.Header{"Authorization": {""}})
	wantAPIError(t, resp, body, http.StatusUnauthorized, "unauthorized")

	// B cannot see, run in, read from, write to or delete A's session.
	a := aIDs[0]
	d.token = tokA
	d.okCell(t, a, "secret = 'A-only'\nopen('a.txt','w').write(secret)")
	for _, r := range []struct{ method, path, body string }{
		{"GET", "", ""}, {"POST", "/exec", `{"code":"secret"}`}, {"GET", "/files", ""}, {"GET", "/files/a.txt", ""},
		{"PUT", "/files/a.txt", "B was here"}, {"DELETE", "/files/a.txt", ""}, {"DELETE", "", ""},
	} {
		resp, body := d.request(t, r.method, "/v1/sessions/"+a+r.path, []byte(r.body), as(tokB))
		wantAPIError(t, resp, body, http.StatusNotFound, "not_found")
		if bytes.Contains(body, []byte("A-only")) {
			t.Errorf("B's %s %s saw A's secret", r.method, r.path)
		}
	}
	resp, body = d.request(t, "GET", "/v1/sessions", nil, as(tokB))
	var list struct {
		Sessions []sessionInfo `json:"sessions"`
	}
	if err := newStrictDecoder(body).Decode(&list); err != nil || resp.StatusCode != 200 || len(list.Sessions) != 1 || list.Sessions[0].ID != bID {
		t.Errorf("B's list: %s %v\n%s", resp.Status, err, body)
	}
	resp, body = d.request(t, "GET", "/v1/sessions", nil, as(tokA))
	list.Sessions = nil
	if err := newStrictDecoder(body).Decode(&list); err != nil || len(list.Sessions) != 2 {
		t.Errorf("A's list: %s %v\n%s", resp.Status, err, body)
	}
	// A's session is untouched by all that.
	if c := d.okCell(t, a, "secret, open('a.txt').read()"); c.Result["text/plain"] != "('A-only', 'A-only')" {
		t.Errorf("A's session after B's attempts: %s", c)
	}
	// A frees a place and may create again.
	resp, body = d.request(t, "DELETE", "/v1/sessions/"+aIDs[1], nil, as(tokA))
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("A deletes its own: %s\n%s", resp.Status, body)
	}
	if resp, body := create(tokA); resp.StatusCode != http.StatusCreated {
		t.Errorf("A after freeing a place: %s\n%s", resp.Status, body)
	}
}

// TestSessionsConcurrent: 20 sessions at once, each running cells in
// parallel with the others: none sees another's variables, files,
// processes or secrets.
func TestSessionsConcurrent(t *testing.T) {
	requireDaemon(t)
	const n = 20
	d := startDaemon(t, daemonConfig{args: []string{"--max-sessions", "24", "--max-sessions-per-token", "24"}})
	secrets := make([]string, n)
	for i := range secrets {
		secrets[i] = fmt.Sprintf("sbx-secret-%02d-%s", i, randomHex(8))
	}
	type outcome struct {
		id      string
		outputs []string
		err     error
	}
	outs := make([]outcome, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			o := &outs[i]
			post := func(path string, body any) (int, []byte, error) {
				b, _ := json.Marshal(body)
				ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
				defer cancel()
				resp, rb, err := d.do(ctx, "POST", path, b, nil)
				if err != nil {
					return 0, nil, err
				}
				return resp.StatusCode, rb, nil
			}
			status, body, err := post("/v1/sessions", map[string]any{"limits": map[string]any{"timeout": "60s", "cpu_time": "60s"}})
			if err != nil || status != http.StatusCreated {
				o.err = fmt.Errorf("create: %d %v\n%s", status, err, body)
				return
			}
			var info sessionInfo
			if err := json.Unmarshal(body, &info); err != nil {
				o.err = err
				return
			}
			o.id = info.ID
			other := (i + 1) % n
			cells := []struct{ code, wantStatus, wantErr string }{
				{fmt.Sprintf("import os, subprocess, sys\nsecret_%d = %q\nopen('secret_%d.txt','w').write(secret_%d)\nbg = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)', secret_%d])\nsecret_%d", i, secrets[i], i, i, i, i), "ok", ""},
				{fmt.Sprintf("secret_%d", other), "error", "NameError"},
				{fmt.Sprintf("open('secret_%d.txt').read()", other), "error", "FileNotFoundError"},
				{"sorted(n for n in globals() if n.startswith('secret_')), sorted(f for f in os.listdir('.') if f.startswith('secret_'))", "ok", ""},
				{"pids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\nprocs = {}\nfor p in pids:\n    try:\n        procs[p] = open(f'/proc/{p}/cmdline','rb').read().replace(b'\\0', b' ').decode(errors='replace')\n    except OSError:\n        pass\nprint(procs)\npids", "ok", ""},
				{fmt.Sprintf("open('secret_%d.txt').read() == secret_%d", i, i), "ok", ""},
			}
			for _, c := range cells {
				status, body, err := post("/v1/sessions/"+o.id+"/exec", map[string]any{"code": c.code})
				if err != nil || status != http.StatusOK {
					o.err = fmt.Errorf("cell %q: %d %v\n%s", c.code, status, err, body)
					return
				}
				var r cellResult
				if err := r.UnmarshalJSON(body); err != nil {
					o.err = fmt.Errorf("cell %q: %v", c.code, err)
					return
				}
				o.outputs = append(o.outputs, string(body))
				if r.Status != c.wantStatus || (c.wantErr != "" && (r.Error == nil || r.Error.Name != c.wantErr)) {
					o.err = fmt.Errorf("cell %q: want %s %s, got %s", c.code, c.wantStatus, c.wantErr, r.String())
					return
				}
				if strings.HasPrefix(c.code, "sorted(n for n") {
					want := fmt.Sprintf("(['secret_%d'], ['secret_%d.txt'])", i, i)
					if r.Result["text/plain"] != want {
						o.err = fmt.Errorf("session %d sees %s, want %s", i, r.Result["text/plain"], want)
						return
					}
				}
				if strings.HasPrefix(c.code, "pids = ") {
					var pids []int
					if err := json.Unmarshal([]byte(r.Result["text/plain"]), &pids); err != nil || len(pids) == 0 || pids[0] != 1 || len(pids) > 8 {
						o.err = fmt.Errorf("session %d sees pids %s (want 1 and a few of its own):\n%s", i, r.Result["text/plain"], r.Stdout)
						return
					}
					if !strings.Contains(string(r.Stdout), secrets[i]) {
						o.err = fmt.Errorf("session %d does not see its own background process:\n%s", i, r.Stdout)
						return
					}
				}
				if c.code == cells[len(cells)-1].code && r.Result["text/plain"] != "True" {
					o.err = fmt.Errorf("session %d: its own file changed: %s", i, r.String())
					return
				}
			}
		}(i)
	}
	wg.Wait()
	for i, o := range outs {
		if o.err != nil {
			t.Errorf("session %d: %v", i, o.err)
		}
		for j, s := range secrets {
			if j == i {
				continue
			}
			for _, out := range o.outputs {
				if strings.Contains(out, s) {
					t.Errorf("session %d saw session %d's secret:\n%s", i, j, tail([]byte(out)))
				}
			}
		}
	}
	if v := d.gauge(t, "sandboxd_sessions_active"); v != n {
		t.Errorf("sandboxd_sessions_active = %v, want %d", v, n)
	}
	for _, o := range outs {
		if o.id == "" {
			continue
		}
		resp, body := d.request(t, "DELETE", "/v1/sessions/"+o.id, nil, nil)
		if resp.StatusCode != http.StatusNoContent {
			t.Errorf("DELETE %s: %s\n%s", o.id, resp.Status, body)
		}
	}
	for _, s := range secrets {
		if left := waitGone(15*time.Second, func() []hostProc { return tokenProcs(s) }); len(left) > 0 {
			t.Errorf("a background process is left: %v", left)
		}
	}
	if left := waitAPILeaks(d.stateDir, 15*time.Second); len(left) > 0 {
		t.Errorf("leftovers after deleting every session: %v", left)
	}
}

// TestSessionIdleExpiry: a session unused for its idle timeout goes away
// with everything of it; one in use stays.
func TestSessionIdleExpiry(t *testing.T) {
	requireDaemon(t)
	d := startDaemon(t, daemonConfig{})
	token, env := sessionProcsToken()
	s := d.createSession(t, map[string]any{"idle_timeout": "2s", "env": env})
	if s.IdleTimeout != "2s" || s.ExpiresAt.Sub(s.LastUsed) != 2*time.Second {
		t.Errorf("idle timeout %q, expires %s after its last use", s.IdleTimeout, s.ExpiresAt.Sub(s.LastUsed))
	}
	d.okCell(t, s.ID, "import subprocess\nbg = subprocess.Popen(['sleep', '1000'])")
	runID := sessionRunID(t, token)
	start := time.Now()
	for {
		resp, body := d.request(t, "GET", "/v1/sessions/"+s.ID, nil, nil)
		if resp.StatusCode == http.StatusNotFound {
			break
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET: %s\n%s", resp.Status, body)
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("the session with a 2s idle timeout still lives after %s", time.Since(start))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("the idle session went away %s after its last cell", time.Since(start).Round(time.Millisecond))
	if d.waitLog(regexp.MustCompile(`msg="session closed" session=`+regexp.QuoteMeta(s.ID)+` .*why="idle timeout"`), 5*time.Second) == "" {
		t.Errorf("the daemon did not log the session's expiry")
	}
	requireSessionGone(t, d, token, runID)
	resp, body := d.request(t, "POST", "/v1/sessions/"+s.ID+"/exec", []byte(`{"code":"1"}`), nil)
	wantAPIError(t, resp, body, http.StatusNotFound, "not_found")
}
