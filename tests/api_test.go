package tests

import (
	"bytes"
	"context"
	"encoding/base64"
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
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The end-to-end tests of `sandboxd serve`: the real binary on a loopback
// port, driven over HTTP (helpers in api_helpers_test.go).

// TestAPIRunStatuses: every status a program can end with is reachable
// through POST /v1/runs, in the short form {runtime, code} and in the files
// form; each result decodes strictly, limit statuses carry a reason naming
// the limit, and the daemon logs one line per run.
func TestAPIRunStatuses(t *testing.T) {
	requireDaemon(t)
	d := startDaemon(t, daemonConfig{})
	cases := []struct {
		name   string
		code   string
		limits map[string]any
		status string
		// exit is the exit code for ok and exited; signal the signal
		// name for signaled; reason a part of the reason for limits.
		exit   int
		signal string
		reason string
		check  func(t *testing.T, r *result)
	}{
		{name: "ok", code: "print('hello')\n", status: "ok", exit: 0, check: func(t *testing.T, r *result) {
			if string(r.Stdout) != "hello\n" || len(r.Stderr) != 0 {
				t.Errorf("stdout %q stderr %q, want \"hello\\n\" and nothing", r.Stdout, r.Stderr)
			}
		}},
		{name: "exited", code: "import sys\nprint('bye', file=sys.stderr)\nsys.exit(3)\n", status: "exited", exit: 3, check: func(t *testing.T, r *result) {
			if string(r.Stderr) != "bye\n" {
				t.Errorf("stderr %q, want \"bye\\n\"", r.Stderr)
			}
		}},
		{name: "signaled", code: "import ctypes\nctypes.string_at(0)\n", status: "signaled", exit: -1, signal: "SIGSEGV"},
		{name: "timeout", code: "while True:\n    pass\n", limits: map[string]any{"timeout": "1s"}, status: "timeout", reason: "1s", check: func(t *testing.T, r *result) {
			if r.WallTime < time.Second || r.WallTime > 4*time.Second {
				t.Errorf("wall_time %s for a 1s timeout", r.WallTime)
			}
		}},
		{name: "cpu_limit", code: "while True:\n    pass\n", limits: map[string]any{"cpu_time": "1s", "timeout": "20s"}, status: "cpu_limit", reason: "1s", check: func(t *testing.T, r *result) {
			if r.CPUTime < time.Second {
				t.Errorf("cpu_time %s, want >= the 1s limit", r.CPUTime)
			}
		}},
		{name: "memory_limit", code: `held = []
while True:
    held.append(bytes([1]) * (16 << 20))
`, limits: map[string]any{"memory": "64MiB", "timeout": "20s"}, status: "memory_limit", reason: "64MiB", check: func(t *testing.T, r *result) {
			if r.OOMKills < 1 {
				t.Errorf("oom_kills = %d next to memory_limit", r.OOMKills)
			}
		}},
		{name: "output_limit", code: "import os\nwhile True:\n    os.write(1, b'x' * 65536)\n", limits: map[string]any{"output": "10KiB", "timeout": "20s"}, status: "output_limit", reason: "10KiB", check: func(t *testing.T, r *result) {
			if len(r.Stdout) != 10*kib || !r.StdoutTruncated {
				t.Errorf("kept %d bytes of stdout (truncated=%v), want the 10KiB cap, truncated", len(r.Stdout), r.StdoutTruncated)
			}
		}},
	}
	forms := []struct {
		name string
		req  func(code string) map[string]any
	}{
		{"short", func(code string) map[string]any {
			return map[string]any{"runtime": "python", "code": code}
		}},
		// The files form, runtime picked by the entry's extension.
		{"files", func(code string) map[string]any {
			return map[string]any{
				"files":      []map[string]any{{"name": "notes.txt", "content": "not run"}, {"name": "prog.py", "content": code}},
				"entrypoint": "prog.py",
			}
		}},
	}
	for _, tc := range cases {
		for _, form := range forms {
			t.Run(tc.name+"/"+form.name, func(t *testing.T) {
				req := form.req(tc.code)
				if tc.limits != nil {
					req["limits"] = tc.limits
				}
				r := d.run(t, req)
				if r.Status != tc.status {
					t.Fatalf("status = %q, want %q\n%s", r.Status, tc.status, r)
				}
				if tc.status == "ok" || tc.status == "exited" || tc.status == "signaled" {
					if r.ExitCode != tc.exit {
						t.Errorf("exit_code = %d, want %d", r.ExitCode, tc.exit)
					}
				}
				if r.SignalName != tc.signal && tc.status == "signaled" {
					t.Errorf("signal_name = %q, want %q", r.SignalName, tc.signal)
				}
				if tc.reason != "" && !strings.Contains(r.Reason, tc.reason) {
					t.Errorf("reason %q does not name the %s limit", r.Reason, tc.reason)
				}
				if r.ID == "" || r.Runtime != "python" || r.Version == "" || r.Isolation.Backend != "process" {
					t.Errorf("id %q runtime %q version %q backend %q: want all set (python, process)", r.ID, r.Runtime, r.Version, r.Isolation.Backend)
				}
				if tc.check != nil {
					tc.check(t, r)
				}
				// One structured log line per run: id, runtime, status.
				line := d.waitLog(regexp.MustCompile(`(?m)^.*msg=run id=`+r.ID+` .*$`), 2*time.Second)
				if !strings.Contains(line, "runtime=python") || !strings.Contains(line, "status="+tc.status) || !strings.Contains(line, "wall=") {
					t.Errorf("no log line \"msg=run id=%s runtime=python status=%s wall=...\" in the daemon's log (found %q)", r.ID, tc.status, line)
				}
			})
		}
	}
}

// TestAPIRunFiles: the files form carries several files (one base64),
// args, stdin and env into the run, and the files the run wrote come back;
// nothing of the daemon's environment reaches the program.
func TestAPIRunFiles(t *testing.T) {
	requireDaemon(t)
	d := startDaemon(t, daemonConfig{})
	binary := []byte{0, 1, 2, 0xff, 0xfe, '\n'}
	r := d.run(t, map[string]any{
		"runtime": "python",
		"files": []map[string]any{
			{"name": "main.py", "content": `import os, sys
import helper
data = open("data/blob.bin", "rb").read()
print(helper.greet(sys.argv[1:]), data.hex(), sys.stdin.read().strip(), os.environ.get("GREETING"), os.environ.get("` + hostSecretVar + `"))
open("out.txt", "w").write("written by the run\n")
`},
			{"name": "helper.py", "content": "def greet(args):\n    return 'hello ' + '|'.join(args)\n"},
			{"name": "data/blob.bin", "content": base64.StdEncoding.EncodeToString(binary), "encoding": "base64"},
		},
		"entrypoint": "main.py",
		"args":       []string{"a b", "--c", "$HOME"},
		"stdin":      "from stdin\n",
		"env":        map[string]string{"GREETING": "hi"},
	})
	if r.Status != "ok" {
		t.Fatalf("status %q\n%s", r.Status, r)
	}
	want := fmt.Sprintf("hello a b|--c|$HOME %x from stdin hi None\n", binary)
	if string(r.Stdout) != want {
		t.Errorf("stdout = %q, want %q", r.Stdout, want)
	}
	if strings.Contains(string(r.Stdout), hostSecret) {
		t.Errorf("the daemon's environment reached the program")
	}
	if f := r.file("out.txt"); f == nil || string(f.Content) != "written by the run\n" {
		t.Errorf("the produced file out.txt did not come back: %+v", r.Files)
	}
}

// TestAPIStreaming: with ?stream=1 or Accept: application/x-ndjson the
// answer is NDJSON: output events in the order the program wrote them,
// across stdout and stderr, then the result, last; and events arrive while
// the program runs, not when it ends.
func TestAPIStreaming(t *testing.T) {
	requireDaemon(t)
	d := startDaemon(t, daemonConfig{})
	const n = 6
	alternating := fmt.Sprintf(`import os, time
for i in range(%d):
    os.write(1, b"out %%d\n" %% i)
    time.sleep(0.1)
    os.write(2, b"err %%d\n" %% i)
    time.sleep(0.1)
os.write(1, b"done\n")
`, n)
	var want []string
	for i := 0; i < n; i++ {
		want = append(want, fmt.Sprintf("stdout:out %d\n", i), fmt.Sprintf("stderr:err %d\n", i))
	}
	want = append(want, "stdout:done\n")

	for _, tc := range []struct {
		name  string
		query string
		hdr   http.Header
	}{
		{"query", "?stream=1", nil},
		{"accept", "?", http.Header{"Accept": {"application/x-ndjson"}}},
	} {
		t.Run("order/"+tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			resp, err := d.streamRun(ctx, mustJSON(t, pyRun(alternating, nil)), tc.hdr, tc.query)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("%s, want 200:\n%s", resp.Status, b)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
				t.Errorf("Content-Type = %q, want application/x-ndjson", ct)
			}
			events := readAllEvents(t, resp.Body)
			last := events[len(events)-1]
			if last.Type != "result" {
				t.Fatalf("the last event is %q, want the result", last.Type)
			}
			var got []string
			var stdout, stderr []byte
			for i, ev := range events[:len(events)-1] {
				switch ev.Type {
				case "stdout":
					stdout = append(stdout, ev.Data...)
				case "stderr":
					stderr = append(stderr, ev.Data...)
				default:
					t.Fatalf("event %d is %q before the end, want only stdout and stderr before the result", i, ev.Type)
				}
				// A write may arrive in more than one chunk; chunks of
				// one stream in a row are one write's.
				if k := len(got) - 1; k >= 0 && strings.HasPrefix(got[k], ev.Type+":") {
					got[k] += string(ev.Data)
					continue
				}
				got = append(got, ev.Type+":"+string(ev.Data))
			}
			if !slices.Equal(got, want) {
				t.Errorf("output events, in order (stream:data):\n got %q\nwant %q", got, want)
			}
			r := last.Result
			if r.Status != "ok" {
				t.Errorf("result status %q\n%s", r.Status, r)
			}
			if !bytes.Equal(r.Stdout, stdout) || !bytes.Equal(r.Stderr, stderr) {
				t.Errorf("the result's stdout %q / stderr %q are not the concatenation of the events' %q / %q", r.Stdout, r.Stderr, stdout, stderr)
			}
		})
	}

	t.Run("live", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		sent := time.Now()
		resp, err := d.streamRun(ctx, mustJSON(t, pyRun("import time\nprint('first', flush=True)\ntime.sleep(1)\nprint('second')\n", nil)), nil, "")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		events := readAllEvents(t, resp.Body)
		first, last := events[0], events[len(events)-1]
		if first.Type != "stdout" || !strings.HasPrefix("first\n", string(first.Data)) {
			t.Fatalf("first event %s %q: want stdout \"first\\n\" (or a first part of it)", first.Type, first.Data)
		}
		gap := last.arrived.Sub(first.arrived)
		t.Logf("first event %s after the request, the result %s after it", first.arrived.Sub(sent).Round(time.Millisecond), gap.Round(time.Millisecond))
		if gap < 700*time.Millisecond {
			t.Errorf("the first event arrived only %s before the result; the program slept 1s after printing it: output is not streamed live", gap)
		}
		if string(last.Result.Stdout) != "first\nsecond\n" {
			t.Errorf("result stdout %q", last.Result.Stdout)
		}
	})

	t.Run("refused request is plain JSON", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		resp, err := d.streamRun(ctx, []byte(`{"runtime":"cobol","code":"x"}`), nil, "")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		wantAPIError(t, resp, b, http.StatusBadRequest, "invalid_argument")
	})
}

// readAllEvents reads a stream to its end; every line must be an event
// and the stream must end with exactly one result.
func readAllEvents(t *testing.T, r io.Reader) []event {
	t.Helper()
	er := newEventReader(r)
	var events []event
	for {
		ev, err := er.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("after %d events: %v", len(events), err)
		}
		events = append(events, ev)
	}
	if len(events) == 0 {
		t.Fatalf("the stream had no events")
	}
	results := 0
	for _, ev := range events {
		if ev.Type == "result" {
			results++
		}
	}
	if results != 1 {
		t.Fatalf("the stream had %d results, want 1", results)
	}
	return events
}

// TestAPIClientDisconnectKillsRun: a client that goes away takes its run
// with it: within a few seconds no process, cgroup, mount or run directory
// of the run is left, and the daemon serves the next run.
func TestAPIClientDisconnectKillsRun(t *testing.T) {
	requireDaemon(t)
	d := startDaemon(t, daemonConfig{})
	sleeper := "import time\nprint('sleeping', flush=True)\ntime.sleep(100)\n"
	canceled := 0.0
	for _, streamed := range []bool{true, false} {
		name := map[bool]string{true: "streamed", false: "plain"}[streamed]
		t.Run(name, func(t *testing.T) {
			token := runToken()
			req := mustJSON(t, map[string]any{"runtime": "python", "code": sleeper, "env": map[string]string{token: "1"}, "limits": map[string]any{"timeout": "60s"}})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			answered := make(chan error, 1)
			if streamed {
				resp, err := d.streamRun(ctx, req, nil, "")
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				if _, err := newEventReader(resp.Body).readStdout("sleeping\n"); err != nil {
					t.Fatal(err)
				}
			} else {
				go func() {
					_, _, err := d.do(ctx, "POST", "/v1/runs", req, nil)
					answered <- err
				}()
			}
			id := waitRunProcs(t, token)
			cancel() // closes the connection
			hungUp := time.Now()
			if !streamed {
				if err := <-answered; !errors.Is(err, context.Canceled) {
					t.Errorf("the plain request ended with %v, want context.Canceled", err)
				}
			}
			if left := waitGone(5*time.Second, func() []hostProc { return append(runProcs(id), tokenProcs(token)...) }); len(left) > 0 {
				t.Errorf("5s after the client hung up, %d process(es) of its run still live:", len(left))
				for _, p := range left {
					t.Errorf("  %s", p)
				}
			}
			left := runLeftovers(d.stateDir, id)
			for deadline := time.Now().Add(5 * time.Second); len(left) > 0 && time.Now().Before(deadline); left = runLeftovers(d.stateDir, id) {
				time.Sleep(50 * time.Millisecond)
			}
			if len(left) > 0 {
				t.Errorf("5s after the client hung up, the run left: %v", left)
			} else {
				t.Logf("run %s gone %s after the client hung up", id, time.Since(hungUp).Round(time.Millisecond))
			}
			if v, ok := d.waitGauge(t, 5*time.Second, "sandboxd_runs_active", func(v float64) bool { return v == 0 }); !ok {
				t.Errorf("sandboxd_runs_active = %v after the only run's client hung up, want 0", v)
			}
			if r := d.run(t, pyRun("print('still serving')\n", nil)); r.Status != "ok" || string(r.Stdout) != "still serving\n" {
				t.Errorf("the next run: %s", r)
			}
			// The gone client's run is counted canceled, not failed.
			canceled++
			waitRuns(t, d, "canceled", canceled)
		})
	}
}

// TestAPIOverload: past --max-concurrent running and --max-queue waiting,
// a request gets 429 with Retry-After at once (plain, streamed and Piston),
// and /readyz says 503 until there is room again.
func TestAPIOverload(t *testing.T) {
	requireDaemon(t)
	d := startDaemon(t, daemonConfig{args: []string{"--max-concurrent", "1", "--max-queue", "1"}})
	if resp, b := d.request(t, "GET", "/readyz", nil, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("/readyz of an idle daemon: %s\n%s", resp.Status, b)
	}
	long := mustJSON(t, pyRun("import time\ntime.sleep(100)\n", map[string]any{"timeout": "60s"}))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, _ = d.do(ctx, "POST", "/v1/runs", long, nil)
		}()
	}
	defer wg.Wait()
	defer cancel()
	if v, ok := d.waitGauge(t, 15*time.Second, "sandboxd_runs_active", func(v float64) bool { return v == 1 }); !ok {
		t.Fatalf("sandboxd_runs_active = %v, want 1", v)
	}
	if v, ok := d.waitGauge(t, 15*time.Second, "sandboxd_queue_depth", func(v float64) bool { return v == 1 }); !ok {
		t.Fatalf("sandboxd_queue_depth = %v, want 1", v)
	}

	short := mustJSON(t, pyRun("print(1)\n", nil))
	for _, tc := range []struct {
		name, path string
		body       []byte
	}{
		{"plain", "/v1/runs", short},
		{"streamed", "/v1/runs?stream=1", short},
		{"piston", "/api/v2/execute", []byte(`{"language":"python","version":"*","files":[{"content":"print(1)"}]}`)},
	} {
		t.Run("429/"+tc.name, func(t *testing.T) {
			start := time.Now()
			resp, b := d.request(t, "POST", tc.path, tc.body, nil)
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("the refusal took %s: a full queue must refuse at once, not wait", took)
			}
			if resp.StatusCode != http.StatusTooManyRequests {
				t.Fatalf("%s, want 429:\n%s", resp.Status, b)
			}
			if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 {
				t.Errorf("Retry-After = %q, want a number of seconds >= 1", resp.Header.Get("Retry-After"))
			}
			if tc.name == "piston" {
				var pe struct {
					Message string `json:"message"`
				}
				if err := json.Unmarshal(b, &pe); err != nil || pe.Message == "" {
					t.Errorf("Piston's 429 body is not {message}: %s", b)
				}
				return
			}
			wantAPIError(t, resp, b, http.StatusTooManyRequests, "too_many_requests")
		})
	}
	resp, b := d.request(t, "GET", "/readyz", nil, nil)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz while every slot and the queue are full: %s, want 503\n%s", resp.Status, b)
	}
	if v := d.gauge(t, "sandboxd_requests_rejected_total", "reason", "queue_full"); v < 3 {
		t.Errorf("sandboxd_requests_rejected_total{reason=\"queue_full\"} = %v after 3 refusals", v)
	}

	cancel() // both long runs' clients hang up
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, _ := d.request(t, "GET", "/readyz", nil, nil)
		if resp.StatusCode == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %s 10s after the runs ended", resp.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r := d.run(t, pyRun("print('room again')\n", nil)); r.Status != "ok" {
		t.Errorf("a run after the load: %s", r)
	}
}

// TestAPIBodyTooLarge: a body past --max-body gets 413 payload_too_large,
// whether it says its length or not; one under it runs.
func TestAPIBodyTooLarge(t *testing.T) {
	requireDaemon(t)
	d := startDaemon(t, daemonConfig{args: []string{"--max-body", "1024"}})
	big := mustJSON(t, pyRun("# "+strings.Repeat("x", 4096)+"\nprint(1)\n", nil))
	t.Run("content-length", func(t *testing.T) {
		resp, b := d.request(t, "POST", "/v1/runs", big, nil)
		msg := wantAPIError(t, resp, b, http.StatusRequestEntityTooLarge, "payload_too_large")
		if !strings.Contains(msg, "1024") {
			t.Errorf("message %q does not say the limit (1024 bytes)", msg)
		}
	})
	t.Run("streamed", func(t *testing.T) {
		resp, b := d.request(t, "POST", "/v1/runs?stream=1", big, nil)
		wantAPIError(t, resp, b, http.StatusRequestEntityTooLarge, "payload_too_large")
	})
	t.Run("chunked", func(t *testing.T) {
		// A reader of unknown length: sent chunked, no Content-Length.
		req, err := http.NewRequest("POST", d.url+"/v1/runs", io.MultiReader(bytes.NewReader(big)))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := d.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if req.ContentLength > 0 {
			t.Fatalf("the request was sent with a length")
		}
		wantAPIError(t, resp, b, http.StatusRequestEntityTooLarge, "payload_too_large")
	})
	t.Run("piston", func(t *testing.T) {
		body := mustJSON(t, map[string]any{"language": "python", "version": "*", "files": []map[string]string{{"content": "# " + strings.Repeat("x", 4096)}}})
		resp, b := d.request(t, "POST", "/api/v2/execute", body, nil)
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("Piston execute with a 4KiB body: %s, want 413\n%s", resp.Status, b)
		}
	})
	t.Run("under the limit", func(t *testing.T) {
		small := mustJSON(t, pyRun("# "+strings.Repeat("x", 900)+"\nprint(1)\n", nil))
		if len(small) > 1024 {
			t.Fatalf("the small body is %d bytes", len(small))
		}
		if r := d.run(t, json.RawMessage(small)); r.Status != "ok" {
			t.Errorf("a %d-byte body: %s", len(small), r)
		}
	})
	if v := d.gauge(t, "sandboxd_requests_rejected_total", "reason", "too_large"); v < 3 {
		t.Errorf("sandboxd_requests_rejected_total{reason=\"too_large\"} = %v after 3 refusals", v)
	}
}

// TestAPIBadRequests: every malformed request gets a 4xx JSON error that
// says what is wrong, and none of them starts a run.
func TestAPIBadRequests(t *testing.T) {
	requireDaemon(t)
	d := startDaemon(t, daemonConfig{})
	const ok = `{"runtime":"python","code":"print(1)"}`
	for _, tc := range []struct {
		name         string
		method, path string
		body         string
		status       int
		code         string
		// say are parts the message must contain.
		say []string
	}{
		{"malformed JSON", "POST", "/v1/runs", `{"runtime": "python", "code": "print(1)"`, 400, "invalid_argument", []string{"body"}},
		{"empty body", "POST", "/v1/runs", ``, 400, "invalid_argument", []string{"body"}},
		{"not an object", "POST", "/v1/runs", `["python", "print(1)"]`, 400, "invalid_argument", nil},
		{"wrong type", "POST", "/v1/runs", `{"runtime":"python","code":5}`, 400, "invalid_argument", []string{"code"}},
		{"unknown field", "POST", "/v1/runs", `{"runtime":"python","code":"print(1)","timout":"1s"}`, 400, "invalid_argument", []string{`timout`}},
		{"unknown limit", "POST", "/v1/runs", `{"runtime":"python","code":"print(1)","limits":{"memroy":"1MiB"}}`, 400, "invalid_argument", []string{"memroy"}},
		{"unknown file field", "POST", "/v1/runs", `{"files":[{"name":"a.py","content":"print(1)","mod":1}]}`, 400, "invalid_argument", []string{`mod`}},
		{"bad unit", "POST", "/v1/runs", `{"runtime":"python","code":"print(1)","limits":{"memory":"12XB"}}`, 400, "invalid_argument", []string{"12XB"}},
		{"bad duration", "POST", "/v1/runs", `{"runtime":"python","code":"print(1)","limits":{"timeout":"5 fortnights"}}`, 400, "invalid_argument", []string{"5 fortnights"}},
		{"limit above the ceiling", "POST", "/v1/runs", `{"runtime":"python","code":"print(1)","limits":{"memory":"100GiB"}}`, 400, "invalid_argument", []string{"memory", "ceiling"}},
		{"limit below the floor", "POST", "/v1/runs", `{"runtime":"python","code":"print(1)","limits":{"memory":"1KiB"}}`, 400, "invalid_argument", []string{"memory"}},
		{"negative limit", "POST", "/v1/runs", `{"runtime":"python","code":"print(1)","limits":{"timeout":-5}}`, 400, "invalid_argument", []string{"-5"}},
		{"unknown runtime", "POST", "/v1/runs", `{"runtime":"cobol","code":"DISPLAY 'HI'."}`, 400, "invalid_argument", []string{"cobol", "python", "javascript"}},
		{"code and files", "POST", "/v1/runs", `{"runtime":"python","code":"print(1)","files":[{"name":"a.py","content":"print(2)"}]}`, 400, "invalid_argument", []string{"code", "files"}},
		{"code without runtime", "POST", "/v1/runs", `{"code":"print(1)"}`, 400, "invalid_argument", []string{"runtime"}},
		{"nothing to run", "POST", "/v1/runs", `{"runtime":"python"}`, 400, "invalid_argument", []string{"files"}},
		{"entrypoint not a file", "POST", "/v1/runs", `{"files":[{"name":"a.py","content":"print(1)"}],"entrypoint":"b.py"}`, 400, "invalid_argument", []string{"b.py"}},
		{"file name ../x", "POST", "/v1/runs", `{"runtime":"python","files":[{"name":"../x","content":"print(1)"}]}`, 400, "invalid_argument", []string{"../x"}},
		{"file name /etc/passwd", "POST", "/v1/runs", `{"runtime":"python","files":[{"name":"/etc/passwd","content":"print(1)"}]}`, 400, "invalid_argument", []string{"/etc/passwd"}},
		{"file name a/../../x", "POST", "/v1/runs", `{"runtime":"python","files":[{"name":"a/../../x","content":"print(1)"}]}`, 400, "invalid_argument", []string{"a/../../x"}},
		{"file given twice", "POST", "/v1/runs", `{"files":[{"name":"a.py","content":"1"},{"name":"a.py","content":"2"}]}`, 400, "invalid_argument", []string{"a.py"}},
		{"bad file encoding", "POST", "/v1/runs", `{"files":[{"name":"a.py","content":"cHJpbnQoMSk=","encoding":"rot13"}]}`, 400, "invalid_argument", []string{"rot13"}},
		{"unknown backend", "POST", "/v1/runs", `{"runtime":"python","code":"print(1)","backend":"vm"}`, 400, "invalid_argument", []string{"vm"}},
		{"env name with =", "POST", "/v1/runs", `{"runtime":"python","code":"print(1)","env":{"A=B":"c"}}`, 400, "invalid_argument", []string{"A=B"}},
		{"trailing garbage", "POST", "/v1/runs", ok + ` garbage`, 400, "invalid_argument", nil},
		{"trailing second value", "POST", "/v1/runs", ok + ` {}`, 400, "invalid_argument", nil},
		// encoding/json's Decoder.More reports false before a closing
		// delimiter: a decoder that checks only More() takes these.
		{"trailing ]", "POST", "/v1/runs", ok + `]`, 400, "invalid_argument", nil},
		{"trailing }", "POST", "/v1/runs", ok + `}`, 400, "invalid_argument", nil},
		{"unknown path", "GET", "/v1/nothing", ``, 404, "not_found", []string{"/v1/nothing"}},
		{"unknown path POST", "POST", "/v2/runs", ok, 404, "not_found", []string{"/v2/runs"}},
		{"GET /v1/runs", "GET", "/v1/runs", ``, 405, "method_not_allowed", []string{"GET"}},
		{"DELETE /v1/runtimes", "DELETE", "/v1/runtimes", ``, 405, "method_not_allowed", []string{"DELETE"}},
		{"PUT /healthz", "PUT", "/healthz", `{}`, 405, "method_not_allowed", nil},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			var body []byte
			if tc.body != "" || tc.method == "POST" {
				body = []byte(tc.body)
			}
			resp, b := d.request(t, tc.method, tc.path, body, nil)
			msg := wantAPIError(t, resp, b, tc.status, tc.code)
			for _, s := range tc.say {
				if !strings.Contains(msg, s) {
					t.Errorf("message %q does not say %q", msg, s)
				}
			}
			if tc.status == 405 && resp.Header.Get("Allow") == "" {
				t.Errorf("405 without an Allow header")
			}
			t.Logf("%d %s", resp.StatusCode, msg)
		})
	}
	samples := parseMetrics(t, d.metricsText(t))
	if n, _ := metric(samples, "sandboxd_runs_total"); n != 0 {
		t.Errorf("sandboxd_runs_total = %v after only bad requests: a bad request ran", n)
	}
	if n, _ := metric(samples, "sandboxd_requests_rejected_total", "reason", "invalid"); n == 0 {
		t.Errorf("sandboxd_requests_rejected_total{reason=\"invalid\"} = 0 after bad requests")
	}
}

// TestAPIAuth: with a token, every endpoint but /healthz and /readyz wants
// it, and a missing or wrong one gets 401 with WWW-Authenticate; a daemon
// without a token refuses a non-loopback address unless told.
func TestAPIAuth(t *testing.T) {
	requireDaemon(t)
	routes := []struct {
		method, path, body string
	}{
		{"POST", "/v1/runs", `{"runtime":"python","code":"print('authorized')"}`},
		{"POST", "/v1/runs?stream=1", `{"runtime":"python","code":"print('authorized')"}`},
		{"GET", "/v1/runtimes", ""},
		{"GET", "/metrics", ""},
		{"POST", "/api/v2/execute", `{"language":"python","version":"*","files":[{"content":"print(1)"}]}`},
		{"GET", "/api/v2/runtimes", ""},
	}
	check := func(t *testing.T, d *daemon, token string) {
		for _, rt := range routes {
			var body []byte
			if rt.body != "" {
				body = []byte(rt.body)
			}
			for _, tc := range []struct {
				name, auth string
				want       int
			}{
				{"no token", "", 401},
				{"wrong token", "Bearer wrong-" + token, 401},
				{"token with a suffix", "Bearer " + token + "x", 401},
				{"token without the scheme", token, 401},
				{"basic auth", "Basic " + base64.StdEncoding.EncodeToString([]byte("user:"+token)), 401},
				{"right token", "Bearer " + token, 200},
			} {
				resp, b := d.request(t, rt.method, rt.path, body, http.Header{"Authorization": {tc.auth}})
				if resp.StatusCode != tc.want {
					t.Errorf("%s %s with %s: %s, want %d (body %.120q)", rt.method, rt.path, tc.name, resp.Status, tc.want, b)
					continue
				}
				if tc.want == 401 {
					if wa := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(wa, "Bearer") {
						t.Errorf("%s %s with %s: WWW-Authenticate = %q, want Bearer ...", rt.method, rt.path, tc.name, wa)
					}
					wantAPIError(t, resp, b, 401, "unauthorized")
				}
			}
		}
		for _, path := range []string{"/healthz", "/readyz"} {
			resp, b := d.request(t, "GET", path, nil, http.Header{"Authorization": {""}})
			if resp.StatusCode != 200 {
				t.Errorf("GET %s without a token: %s, want 200 (probes carry no token)\n%s", path, resp.Status, b)
			}
		}
		if v := d.gauge(t, "sandboxd_requests_rejected_total", "reason", "unauthorized"); v < float64(5*len(routes)) {
			t.Errorf("sandboxd_requests_rejected_total{reason=\"unauthorized\"} = %v after %d refusals", v, 5*len(routes))
		}
	}
	t.Run("token-file", func(t *testing.T) {
		token := "tok-" + randomHex(16)
		d := startDaemon(t, daemonConfig{token: token})
		check(t, d, token)
	})
	t.Run("SANDBOXD_TOKEN", func(t *testing.T) {
		token := "env-" + randomHex(16)
		d := startDaemon(t, daemonConfig{env: []string{"SANDBOXD_TOKEN=" + token}})
		d.token = token
		check(t, d, token)
	})
	t.Run("scheme is case-insensitive", func(t *testing.T) {
		// RFC 7235 section 2.1: "It uses a case-insensitive token as a
		// means to identify the authentication scheme". Some clients
		// send "bearer".
		token := "tok-" + randomHex(16)
		d := startDaemon(t, daemonConfig{token: token})
		resp, b := d.request(t, "GET", "/v1/runtimes", nil, http.Header{"Authorization": {"bearer " + token}})
		if resp.StatusCode != 200 {
			t.Errorf("Authorization: bearer <token> (lower case scheme): %s, want 200\n%s", resp.Status, tail(b))
		}
	})
	t.Run("non-loopback without a token is refused", func(t *testing.T) {
		for _, host := range []string{"0.0.0.0", "", "::"} {
			listen := net.JoinHostPort(host, strconv.Itoa(freePort(t)))
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, sandboxd, "serve", "--listen", listen, "--state-dir", newStateDir(t))
			cmd.Env = daemonEnv()
			out, err := cmd.CombinedOutput()
			if ctx.Err() != nil {
				t.Fatalf("sandboxd serve --listen %s without a token did not exit within 15s: it served", listen)
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() == 0 {
				t.Errorf("sandboxd serve --listen %s without a token: %v, want a non-zero exit", listen, err)
			}
			if !strings.Contains(string(out), "token") {
				t.Errorf("sandboxd serve --listen %s without a token says %q: it should say a token is needed", listen, out)
			}
			t.Logf("--listen %s: exit %v: %s", listen, err, strings.TrimSpace(string(out)))
		}
	})
	t.Run("non-loopback with --insecure-no-token", func(t *testing.T) {
		d := startDaemon(t, daemonConfig{listenHost: "0.0.0.0", args: []string{"--insecure-no-token"}})
		if r := d.run(t, pyRun("print('open')\n", nil)); r.Status != "ok" {
			t.Errorf("run: %s", r)
		}
	})
	t.Run("non-loopback with a token", func(t *testing.T) {
		token := "tok-" + randomHex(16)
		d := startDaemon(t, daemonConfig{listenHost: "0.0.0.0", token: token})
		if resp, _ := d.request(t, "GET", "/v1/runtimes", nil, http.Header{"Authorization": {""}}); resp.StatusCode != 401 {
			t.Errorf("no token: %s, want 401", resp.Status)
		}
		if r := d.run(t, pyRun("print('guarded')\n", nil)); r.Status != "ok" {
			t.Errorf("run: %s", r)
		}
	})
	t.Run("empty token file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(path, []byte("\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, sandboxd, "serve", "--listen", fmt.Sprintf("127.0.0.1:%d", freePort(t)), "--token-file", path, "--state-dir", newStateDir(t))
		cmd.Env = daemonEnv()
		out, err := cmd.CombinedOutput()
		if ctx.Err() != nil || err == nil {
			t.Errorf("sandboxd serve with an empty token file: %v %s, want a refusal", err, out)
		}
	})
}

// runtimeInfo is one entry of GET /v1/runtimes, decoded strictly.
type runtimeInfo struct {
	Name       string   `json:"name"`
	Version    string   `json:"version"`
	Aliases    []string `json:"aliases"`
	Extensions []string `json:"extensions"`
	Backends   []string `json:"backends"`
	Compiled   bool     `json:"compiled"`
}

// TestAPIRuntimes: GET /v1/runtimes lists the installed runtimes with their
// real versions.
func TestAPIRuntimes(t *testing.T) {
	requireDaemon(t)
	d := startDaemon(t, daemonConfig{})
	resp, b := d.request(t, "GET", "/v1/runtimes", nil, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("%s\n%s", resp.Status, b)
	}
	var got struct {
		Runtimes []runtimeInfo `json:"runtimes"`
	}
	if err := newStrictDecoder(b).Decode(&got); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	byName := map[string]runtimeInfo{}
	for _, rt := range got.Runtimes {
		byName[rt.Name] = rt
		if rt.Version == "" || len(rt.Backends) == 0 {
			t.Errorf("runtime %+v: want a version and a backend", rt)
		}
	}
	out, err := exec.Command("/usr/bin/python3", "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	hostPy := strings.TrimPrefix(strings.TrimSpace(string(out)), "Python ")
	py, ok := byName["python"]
	switch {
	case !ok:
		t.Errorf("no python in %s", b)
	case py.Version != hostPy:
		t.Errorf("python version %q, want the host's /usr/bin/python3: %q", py.Version, hostPy)
	case !slices.Contains(py.Extensions, ".py") || py.Compiled:
		t.Errorf("python: %+v", py)
	}
	if c, ok := byName["c"]; !ok || !c.Compiled {
		t.Errorf("c: %+v (present %v), want a compiled runtime", c, ok)
	}
}

// apiRoutes are the routes the daemon serves (internal/api routes()),
// written out here: the test checks the OpenAPI document against the
// daemon as a client sees it.
var apiRoutes = []struct{ method, path string }{
	{"POST", "/v1/runs"},
	{"GET", "/v1/runtimes"},
	{"GET", "/healthz"},
	{"GET", "/readyz"},
	{"GET", "/metrics"},
	{"GET", "/openapi.json"},
	{"POST", "/api/v2/execute"},
	{"GET", "/api/v2/runtimes"},
	{"POST", "/v1/sessions"},
	{"GET", "/v1/sessions"},
	{"GET", "/v1/sessions/{id}"},
	{"DELETE", "/v1/sessions/{id}"},
	{"POST", "/v1/sessions/{id}/exec"},
	{"POST", "/v1/sessions/{id}/interrupt"},
	{"GET", "/v1/sessions/{id}/files"},
	{"PUT", "/v1/sessions/{id}/files/{path}"},
	{"GET", "/v1/sessions/{id}/files/{path}"},
	{"DELETE", "/v1/sessions/{id}/files/{path}"},
}

// TestAPIOpenAPI: GET /openapi.json is an OpenAPI 3 document with every
// route the daemon serves, and every path it documents is served.
func TestAPIOpenAPI(t *testing.T) {
	requireDaemon(t)
	d := startDaemon(t, daemonConfig{})
	resp, b := d.request(t, "GET", "/openapi.json", nil, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("%s\n%s", resp.Status, b)
	}
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Info    map[string]any                        `json:"info"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("/openapi.json is not JSON of an OpenAPI document: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi = %q, want 3.x", doc.OpenAPI)
	}
	if doc.Info["title"] == nil || doc.Info["version"] == nil {
		t.Errorf("info = %v, want a title and a version", doc.Info)
	}
	for _, r := range apiRoutes {
		if _, ok := doc.Paths[r.path][strings.ToLower(r.method)]; !ok {
			t.Errorf("the daemon serves %s %s; the document does not have it", r.method, r.path)
		}
	}
	var documented []string
	for path, ops := range doc.Paths {
		for method := range ops {
			switch method {
			case "get", "post", "put", "delete", "patch", "head", "options":
				documented = append(documented, strings.ToUpper(method)+" "+path)
			}
		}
	}
	sort.Strings(documented)
	for _, op := range documented {
		method, path, _ := strings.Cut(op, " ")
		if strings.Contains(path, "{") {
			t.Logf("%s: templated, not requested", op)
			continue
		}
		var body []byte
		if method != "GET" && method != "HEAD" {
			body = []byte(`{}`)
		}
		resp, b := d.request(t, method, path, body, nil)
		if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed {
			t.Errorf("documented %s answers %s:\n%s", op, resp.Status, tail(b))
		}
	}
	t.Logf("documented: %v", documented)
}

// TestAPIMetrics: GET /metrics is Prometheus text with the daemon's own
// metrics and the Go and process collectors'.
func TestAPIMetrics(t *testing.T) {
	requireDaemon(t)
	d := startDaemon(t, daemonConfig{})
	t.Run("before any request", func(t *testing.T) {
		samples := parseMetrics(t, d.metricsText(t))
		for _, name := range []string{"sandboxd_runs_active", "sandboxd_queue_depth", "go_goroutines", "process_open_fds"} {
			if _, ok := metric(samples, name); !ok {
				t.Errorf("/metrics has no %s", name)
			}
		}
		// A counter that appears only after its first increment reads
		// as "no data" on a dashboard, and rate() over it is empty: the
		// reasons are a known set, so their series can start at 0.
		if _, ok := metric(samples, "sandboxd_requests_rejected_total"); !ok {
			t.Errorf("/metrics has no sandboxd_requests_rejected_total before the first rejection: its series (reasons queue_full, invalid, too_large, unauthorized) should be exported at 0 from the start")
		}
		if v, ok := metric(samples, "sandboxd_requests_rejected_total", "reason", "memory_budget"); !ok || v != 0 {
			t.Errorf("sandboxd_requests_rejected_total{reason=memory_budget} = %v (present %v), want 0 from the start", v, ok)
		}
		// The default budget: what this host can give, less a reserve.
		if v, ok := metric(samples, "sandboxd_memory_budget_bytes"); !ok || v < 1<<30 {
			t.Errorf("sandboxd_memory_budget_bytes = %v (present %v), want this host's memory less a reserve", v, ok)
		}
	})
	t.Run("after runs", func(t *testing.T) {
		d.run(t, pyRun("print(1)\n", nil))
		d.run(t, pyRun("import sys\nsys.exit(3)\n", nil))
		d.request(t, "POST", "/v1/runs", []byte(`{"runtime":"cobol","code":"x"}`), nil)
		resp, err := http.Get(d.url + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			t.Errorf("Content-Type = %q, want the Prometheus text format", ct)
		}
		samples := parseMetrics(t, d.metricsText(t))
		for _, m := range []struct {
			name   string
			labels []string
			want   float64
		}{
			{"sandboxd_runs_total", []string{"status", "ok", "runtime", "python"}, 1},
			{"sandboxd_runs_total", []string{"status", "exited", "runtime", "python"}, 1},
			{"sandboxd_run_duration_seconds_count", []string{"runtime", "python"}, 2},
			{"sandboxd_requests_rejected_total", []string{"reason", "invalid"}, 1},
			{"sandboxd_runs_active", nil, 0},
			{"sandboxd_queue_depth", nil, 0},
			{"sandboxd_memory_promised_bytes", nil, 0},
		} {
			if v, ok := metric(samples, m.name, m.labels...); !ok || v != m.want {
				t.Errorf("%s%v = %v (present %v), want %v", m.name, m.labels, v, ok, m.want)
			}
		}
		for _, name := range []string{"go_goroutines", "process_open_fds"} {
			if v, ok := metric(samples, name); !ok || v <= 0 {
				t.Errorf("%s = %v (present %v)", name, v, ok)
			}
		}
	})
}

// TestAPIHammer: 500 runs at concurrency 32 through the API against the
// default admission (2 at once, 64 waiting): every answer right, and
// afterwards the daemon's goroutines and fds back where they were, and no
// process, cgroup, mount or run directory left.
func TestAPIHammer(t *testing.T) {
	requireDaemon(t)
	d := startDaemon(t, daemonConfig{args: []string{"--max-concurrent", "2", "--max-queue", "64"}})
	const runs, workers = 500, 32
	client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	post := func(ctx context.Context, i int) error {
		want := fmt.Sprintf("hammer-%d-%s", i, randomHex(6))
		body, _ := json.Marshal(pyRun(fmt.Sprintf("print(%q)\n", want), nil))
		req, err := http.NewRequestWithContext(ctx, "POST", d.url+"/v1/runs", bytes.NewReader(body))
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != 200 {
			return fmt.Errorf("%s: %s", resp.Status, hexID.ReplaceAllString(strings.TrimSpace(string(b)), "<id>"))
		}
		var r result
		if err := newStrictDecoder(b).Decode(&r); err != nil {
			return fmt.Errorf("decode result: %w", err)
		}
		if r.Status != "ok" || string(r.Stdout) != want+"\n" || len(r.Stderr) != 0 {
			return fmt.Errorf("status %s (%s) stdout %q stderr %q, want ok and this request's own token", r.Status, hexID.ReplaceAllString(r.Reason, "<id>"), strings.ReplaceAll(string(r.Stdout), want, "<token>"), r.Stderr)
		}
		return nil
	}
	// Warm up (runtime version probe, first connections), then count.
	for i := 0; i < 4; i++ {
		if err := post(context.Background(), -1); err != nil {
			t.Fatalf("warm-up run: %v", err)
		}
	}
	client.CloseIdleConnections()
	time.Sleep(300 * time.Millisecond)
	before := parseMetrics(t, d.metricsText(t))
	goroutines0, _ := metric(before, "go_goroutines")
	fds0, _ := metric(before, "process_open_fds")
	ok0, _ := metric(before, "sandboxd_runs_total", "status", "ok")

	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	jobs := make(chan int)
	var mu sync.Mutex
	failures := map[string]int{}
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				if err := post(ctx, i); err != nil {
					mu.Lock()
					failures[err.Error()]++
					mu.Unlock()
				}
			}
		}()
	}
	for i := 0; i < runs; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	took := time.Since(start)
	t.Logf("%d runs at concurrency %d (daemon: 2 at once, 64 queued) in %s: %.1f runs/s", runs, workers, took.Round(time.Millisecond), float64(runs)/took.Seconds())
	failed := 0
	for msg, n := range failures {
		failed += n
		t.Errorf("%d run(s): %s", n, msg)
	}
	if failed > 0 {
		t.Fatalf("%d of %d runs failed", failed, runs)
	}

	// Settle: the client's keep-alive connections close, the daemon's
	// goroutines serving them end.
	client.CloseIdleConnections()
	const goroutineSlack, fdSlack = 3, 2
	var goroutines1, fds1 float64
	var after []sample
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		after = parseMetrics(t, d.metricsText(t))
		goroutines1, _ = metric(after, "go_goroutines")
		fds1, _ = metric(after, "process_open_fds")
		if goroutines1 <= goroutines0+goroutineSlack && fds1 <= fds0+fdSlack || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("daemon before/after: %v/%v goroutines, %v/%v open fds", goroutines0, goroutines1, fds0, fds1)
	if goroutines1 > goroutines0+goroutineSlack {
		t.Errorf("the daemon has %v goroutines after the hammer, %v before: a leak", goroutines1, goroutines0)
	}
	if fds1 > fds0+fdSlack {
		t.Errorf("the daemon has %v open fds after the hammer, %v before: a leak", fds1, fds0)
	}
	if ok1, _ := metric(after, "sandboxd_runs_total", "status", "ok"); ok1-ok0 != runs {
		t.Errorf("sandboxd_runs_total{status=\"ok\"} went up by %v, want %d", ok1-ok0, runs)
	}
	for _, name := range []string{"sandboxd_runs_active", "sandboxd_queue_depth"} {
		if v, _ := metric(after, name); v != 0 {
			t.Errorf("%s = %v after every run answered", name, v)
		}
	}
	if l := waitAPILeaks(d.stateDir, 5*time.Second); len(l) > 0 {
		t.Errorf("the hammer left state behind: %v", l)
	}
}

// TestAPIDaemonSIGKILL: SIGKILL the daemon mid-run. Its sandboxed
// processes die with it (the parent-death signal); the run directory,
// workspace mount and cgroups it leaves are swept by the next daemon on
// the same state dir at start, and that daemon runs programs.
func TestAPIDaemonSIGKILL(t *testing.T) {
	requireDaemon(t)
	stateDir := newStateDir(t)
	d := startDaemon(t, daemonConfig{stateDir: stateDir})
	token := startSleepingRun(t, d)
	id := waitRunProcs(t, token)
	t.Logf("run %s: %d process(es) before the kill", id, len(runProcs(id)))

	d.signal(t, syscall.SIGKILL)
	if _, ok := d.wait(5 * time.Second); !ok {
		t.Fatalf("sandboxd did not die of SIGKILL")
	}
	killed := time.Now()
	if left := waitGone(5*time.Second, func() []hostProc { return append(runProcs(id), tokenProcs(token)...) }); len(left) > 0 {
		t.Errorf("5s after the daemon was SIGKILLed, %d process(es) of its run still live:", len(left))
		for _, p := range left {
			t.Errorf("  %s", p)
		}
	} else {
		t.Logf("every process of the run was gone %s after the kill", time.Since(killed).Round(time.Millisecond))
	}
	left := runLeftovers(stateDir, id)
	t.Logf("left behind for the next daemon to sweep: %v", left)
	if !slices.ContainsFunc(left, func(s string) bool { return strings.HasPrefix(s, "run directory") }) {
		t.Errorf("no run directory left by the killed daemon: the sweep below proves nothing")
	}

	d2 := startDaemon(t, daemonConfig{stateDir: stateDir})
	if left := runLeftovers(stateDir, id); len(left) > 0 {
		t.Errorf("the restarted daemon serves, but the killed run's leftovers are still there: %v", left)
	}
	if d2.waitLog(regexp.MustCompile(`sweeping leftover run.*`+id), 2*time.Second) == "" {
		t.Errorf("the restarted daemon did not log sweeping run %s", id)
	}
	if r := d2.run(t, pyRun("print('after the kill')\n", nil)); r.Status != "ok" || string(r.Stdout) != "after the kill\n" {
		t.Errorf("a run on the restarted daemon: %s", r)
	}
}

// startSleepingRun starts a streamed Python run on d that prints
// "sleeping" and sleeps for 100 s, with a fresh token as the name of a
// variable of its environment, and returns the token once the run has
// printed. The stream ends with the test.
func startSleepingRun(t *testing.T, d *daemon) string {
	t.Helper()
	token := runToken()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	resp, err := d.streamRun(ctx, mustJSON(t, map[string]any{
		"runtime": "python", "code": "import time\nprint('sleeping', flush=True)\ntime.sleep(100)\n",
		"env": map[string]string{token: "1"}, "limits": map[string]any{"timeout": "60s"},
	}), nil, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if _, err := newEventReader(resp.Body).readStdout("sleeping\n"); err != nil {
		t.Fatal(err)
	}
	return token
}

// TestAPIDaemonSIGKILLZygote: SIGKILL a daemon whose warm runs are forked
// by its fork server, mid-run. The server dies with it, and so does the
// run's process (forked by the server into a sandbox whose init died).
func TestAPIDaemonSIGKILLZygote(t *testing.T) {
	requireDaemon(t)
	stateDir := newStateDir(t)
	d := startDaemon(t, daemonConfig{stateDir: stateDir, args: []string{"--warm", "python=1", "--warm-zygote"}})
	(&warmDaemon{daemon: d}).waitReady(t)
	token := startSleepingRun(t, d)
	// The run's process shows the run's environment (zygote.py, _show_as).
	procs := waitFor(t, 15*time.Second, func() []hostProc { return tokenAnyProcs(token) })
	servers := childrenOf(d.cmd.Process.Pid, "--zygote")
	if len(procs) < 1 || len(servers) != 1 {
		t.Fatalf("before the kill: %d process(es) with the run's token (want the run's), %d fork server(s) (want 1)", len(procs), len(servers))
	}
	d.signal(t, syscall.SIGKILL)
	if _, ok := d.wait(5 * time.Second); !ok {
		t.Fatalf("sandboxd did not die of SIGKILL")
	}
	left := waitGone(5*time.Second, func() []hostProc {
		out := tokenAnyProcs(token)
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", servers[0])); err == nil {
			if p, ok := readProc(servers[0]); ok && strings.Contains(p.cmdline, "--zygote") {
				out = append(out, p)
			}
		}
		return out
	})
	for _, p := range left {
		t.Errorf("5s after the daemon was SIGKILLed, still live: %s", p)
	}
	// What the killed daemon left is the next one's to sweep.
	startDaemon(t, daemonConfig{stateDir: stateDir})
}

// TestAPIDaemonPassesOnNoInheritedFiles: a descriptor the daemon
// inherited without close-on-exec (here a pipe at fd 20, as a shell or a
// supervisor may leave one) reaches none of the processes it starts: its
// fork server, a host-root process every warm run is forked from, and
// its spawner hold only their own.
func TestAPIDaemonPassesOnNoInheritedFiles(t *testing.T) {
	requireDaemon(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(r.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	stray := fmt.Sprintf("pipe:[%d]", st.Ino)
	files := make([]*os.File, 18)
	files[17] = r
	d := startDaemon(t, daemonConfig{args: []string{"--warm", "python=1", "--warm-zygote"}, files: files})
	(&warmDaemon{daemon: d}).waitReady(t)
	if res := d.run(t, map[string]any{"runtime": "python", "code": "print(1)"}); string(res.Stdout) != "1\n" || !res.Isolation.Zygote {
		t.Fatalf("a warm run: %q %q, zygote %v", res.Stdout, res.Stderr, res.Isolation.Zygote)
	}
	if len(fdsOpenOn(d.cmd.Process.Pid, stray)) == 0 {
		t.Fatalf("the daemon does not hold the pipe %s it was given: the test proves nothing", stray)
	}
	children := childrenOf(d.cmd.Process.Pid, "")
	if len(childrenOf(d.cmd.Process.Pid, "--zygote")) != 1 {
		t.Fatalf("no fork server among the daemon's children %v", children)
	}
	for _, pid := range children {
		if fds := fdsOpenOn(pid, stray); len(fds) > 0 {
			p, _ := readProc(pid)
			t.Errorf("%s holds the daemon's inherited %s at %v", p, stray, fds)
		}
	}
}

// fdsOpenOn lists pid's /proc fd links that point at target.
func fdsOpenOn(pid int, target string) []string {
	var out []string
	fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
	for _, fd := range fds {
		if link, _ := os.Readlink(fd); link == target {
			out = append(out, fd)
		}
	}
	return out
}

// tokenAnyProcs lists the processes whose environment or command line
// holds token, whatever their uid (tokenProcs's are the sandboxes').
func tokenAnyProcs(token string) []hostProc {
	var out []hostProc
	for _, pid := range allPids() {
		if pid == os.Getpid() {
			continue
		}
		for _, f := range []string{"cmdline", "environ"} {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, f))
			if p, ok := readProc(pid); ok && err == nil && bytes.Contains(b, []byte(token)) {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// childrenOf lists the pids of pid's children whose command line
// contains arg.
func childrenOf(pid int, arg string) []int {
	var out []int
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, task := range tasks {
		b, _ := os.ReadFile(task)
		for _, f := range strings.Fields(string(b)) {
			c, _ := strconv.Atoi(f)
			if p, ok := readProc(c); ok && strings.Contains(p.cmdline, arg) {
				out = append(out, c)
			}
		}
	}
	return out
}

// TestAPIGracefulShutdown: on SIGTERM the daemon stops taking requests, lets
// running runs finish within --grace, then kills what is left and exits 0.
func TestAPIGracefulShutdown(t *testing.T) {
	requireDaemon(t)
	t.Run("run finishes", func(t *testing.T) {
		d := startDaemon(t, daemonConfig{args: []string{"--grace", "10s"}})
		token := runToken()
		type answer struct {
			resp *http.Response
			body []byte
			err  error
		}
		answered := make(chan answer, 1)
		go func() {
			resp, b, err := d.do(context.Background(), "POST", "/v1/runs", mustJSON(t, map[string]any{
				"runtime": "python", "code": "import time\nprint('start', flush=True)\ntime.sleep(2)\nprint('done')\n",
				"env": map[string]string{token: "1"},
			}), nil)
			answered <- answer{resp, b, err}
		}()
		waitRunProcs(t, token)
		termed := time.Now()
		d.signal(t, syscall.SIGTERM)
		// No new connections once SIGTERM is in.
		refused := false
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			c, err := net.DialTimeout("tcp", d.addr, time.Second)
			if err != nil {
				refused = true
				break
			}
			c.Close()
		}
		if !refused {
			t.Errorf("the daemon still accepts connections 2s after SIGTERM")
		}
		var a answer
		select {
		case a = <-answered:
		case <-time.After(15 * time.Second):
			t.Fatalf("no answer to the in-flight run 15s after SIGTERM")
		}
		if a.err != nil {
			t.Fatalf("the in-flight run: %v", a.err)
		}
		if a.resp.StatusCode != 200 {
			t.Fatalf("the in-flight run: %s\n%s", a.resp.Status, a.body)
		}
		if r := decodeAPIResult(t, a.body); r.Status != "ok" || string(r.Stdout) != "start\ndone\n" {
			t.Errorf("the in-flight run did not complete: %s", r)
		}
		code, ok := d.wait(5 * time.Second)
		if !ok {
			t.Fatalf("the daemon did not exit within 5s of its last run's end")
		}
		if code != 0 {
			t.Errorf("the daemon exited %d after a graceful shutdown, want 0", code)
		}
		t.Logf("the daemon exited %d, %s after SIGTERM", code, time.Since(termed).Round(time.Millisecond))
	})
	t.Run("grace expires", func(t *testing.T) {
		d := startDaemon(t, daemonConfig{args: []string{"--grace", "1s"}})
		token := runToken()
		type answer struct {
			status int
			body   []byte
			err    error
			at     time.Time
		}
		answered := make(chan answer, 1)
		go func() {
			resp, b, err := d.do(context.Background(), "POST", "/v1/runs", mustJSON(t, map[string]any{
				"runtime": "python", "code": "import time\nprint('start', flush=True)\ntime.sleep(100)\n",
				"env": map[string]string{token: "1"}, "limits": map[string]any{"timeout": "60s"},
			}), nil)
			a := answer{body: b, err: err, at: time.Now()}
			if resp != nil {
				a.status = resp.StatusCode
			}
			answered <- a
		}()
		id := waitRunProcs(t, token)
		termed := time.Now()
		d.signal(t, syscall.SIGTERM)
		left := waitGone(10*time.Second, func() []hostProc { return append(runProcs(id), tokenProcs(token)...) })
		gone := time.Since(termed)
		if len(left) > 0 {
			t.Fatalf("10s after SIGTERM with --grace 1s the run still has %d process(es)", len(left))
		}
		if gone < 900*time.Millisecond || gone > 4*time.Second {
			t.Errorf("the run was killed %s after SIGTERM, want about the 1s grace", gone.Round(time.Millisecond))
		}
		code, ok := d.wait(5 * time.Second)
		if !ok {
			t.Fatalf("the daemon did not exit within 5s of killing its last run")
		}
		if code != 0 {
			t.Errorf("the daemon exited %d after the grace period, want 0", code)
		}
		select {
		case a := <-answered:
			t.Logf("the client of the killed run got %d %v after %s: %s", a.status, a.err, a.at.Sub(termed).Round(time.Millisecond), tail(a.body))
			if a.err == nil && a.status == 200 {
				// Canceled by the daemon, which says why: not the
				// client's going, not a sandbox failure.
				if r := decodeAPIResult(t, a.body); r.Status != "canceled" || !strings.Contains(r.Reason, "grace period of 1s passed") {
					t.Errorf("the killed run: status %s, reason %q; want canceled by the shutdown", r.Status, r.Reason)
				}
			}
		case <-time.After(5 * time.Second):
			t.Errorf("the client of the killed run got no answer and no error 5s after the daemon exited")
		}
		t.Logf("run killed %s and daemon exited %d, %s after SIGTERM", gone.Round(time.Millisecond), code, time.Since(termed).Round(time.Millisecond))
		if left := runLeftovers(d.stateDir, id); len(left) > 0 {
			t.Errorf("the killed run left: %v", left)
		}
	})
}

// TestAPISandboxctlServer: `sandboxctl run --server URL` gives the same
// stdout, stderr and exit code as a local run, takes the token from
// --token or SANDBOXD_TOKEN, and prints the result with --json.
func TestAPISandboxctlServer(t *testing.T) {
	requireDaemon(t)
	token := "tok-" + randomHex(16)
	d := startDaemon(t, daemonConfig{token: token})
	both := writeScript(t, "both.py", `import sys
data = sys.stdin.read()
print("out:", data.strip(), flush=True)
print("err line", file=sys.stderr, flush=True)
print("more out")
sys.exit(3)
`)
	for _, tc := range []struct {
		name  string
		flags []string
		file  string
		code  int
	}{
		{"exit 3", nil, both, 3},
		{"timeout", []string{"--timeout", "1s"}, writeScript(t, "spin.py", "print('spinning', flush=True)\nwhile True:\n    pass\n"), 124},
		{"SIGSEGV", nil, writeScript(t, "segv.py", "import ctypes\nctypes.string_at(0)\n"), 128 + 11},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			local := sbx(t, invocation{args: append(append([]string{"run"}, tc.flags...), tc.file), stdin: []byte("hello\n")})
			remote := sbx(t, invocation{args: append(append([]string{"run", "--server", d.url, "--token", token}, tc.flags...), tc.file), stdin: []byte("hello\n")})
			if local.code != tc.code {
				t.Errorf("local run: exit %d, want %d; stderr %q", local.code, tc.code, local.stderr)
			}
			if remote.code != local.code || !bytes.Equal(remote.stdout, local.stdout) || !bytes.Equal(remote.stderr, local.stderr) {
				t.Errorf("--server differs from a local run:\nlocal:  exit %d stdout %q stderr %q\nremote: exit %d stdout %q stderr %q",
					local.code, local.stdout, local.stderr, remote.code, remote.stdout, remote.stderr)
			}
		})
	}
	t.Run("json", func(t *testing.T) {
		o := sbx(t, invocation{args: []string{"run", "--json", "--server", d.url, "--token", token, both}, stdin: []byte("hello\n")})
		var r result
		if err := newStrictDecoder(o.stdout).Decode(&r); err != nil {
			t.Fatalf("--json --server printed no result (%v): %s\nstderr %s", err, o.stdout, o.stderr)
		}
		if o.code != 3 || r.Status != "exited" || r.ExitCode != 3 || string(r.Stdout) != "out: hello\nmore out\n" || string(r.Stderr) != "err line\n" {
			t.Errorf("exit %d, result %s", o.code, &r)
		}
	})
	t.Run("SANDBOXD_TOKEN", func(t *testing.T) {
		t.Setenv("SANDBOXD_TOKEN", token)
		o := sbx(t, invocation{args: []string{"run", "--server", d.url, both}, stdin: []byte("env\n")})
		if o.code != 3 || string(o.stdout) != "out: env\nmore out\n" {
			t.Errorf("with SANDBOXD_TOKEN: exit %d stdout %q stderr %q", o.code, o.stdout, o.stderr)
		}
	})
	t.Run("no token", func(t *testing.T) {
		o := sbx(t, invocation{args: []string{"run", "--server", d.url, both}})
		if o.code != 125 || !strings.Contains(string(o.stderr), "401") {
			t.Errorf("without a token: exit %d stderr %q, want 125 and the daemon's 401", o.code, o.stderr)
		}
	})
	t.Run("streams live and SIGINT kills the remote run", func(t *testing.T) {
		runTok := runToken()
		path := writeScript(t, "live.py", "import time\nprint('first', flush=True)\ntime.sleep(100)\n")
		cmd := exec.Command(sandboxctl, "run", "--server", d.url, "--token", token, "--env", runTok+"=1", "--timeout", "60s", path)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		defer func() {
			_ = cmd.Process.Kill()
			<-done
		}()
		line := make(chan string, 1)
		go func() {
			b := make([]byte, 64)
			n, _ := io.ReadAtLeast(stdout, b, len("first\n"))
			line <- string(b[:n])
			_, _ = io.Copy(io.Discard, stdout)
			_ = cmd.Wait()
			close(done)
		}()
		select {
		case l := <-line:
			if l != "first\n" {
				t.Fatalf("sandboxctl --server printed %q first", l)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("no output from sandboxctl --server within 15s while the program sleeps: not streamed; stderr %s", stderr.String())
		}
		id := waitRunProcs(t, runTok)
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("sandboxctl --server did not exit within 5s of SIGINT")
		}
		if code := cmd.ProcessState.ExitCode(); code != 130 {
			t.Errorf("sandboxctl --server exited %d after SIGINT, want 130", code)
		}
		if left := waitGone(5*time.Second, func() []hostProc { return append(runProcs(id), tokenProcs(runTok)...) }); len(left) > 0 {
			t.Errorf("5s after sandboxctl --server was interrupted, the daemon's run still has %d process(es)", len(left))
		}
	})
}
