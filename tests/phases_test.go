package tests

import (
	"context"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Requests are bounded in time at every phase (issue 14): a body is read
// under --read-timeout, and a client that goes away while it sends its
// body stops the parsing there. Headers (--read-header-timeout), each
// write of the answer (--write-timeout) and an idle connection
// (--idle-timeout) have their tests in conn_test.go; the run itself stops
// with its request's context (TestConnStreamWriteDeadline, "never reads").

const phaseReadLimit = 3 * time.Second

// rejectedInvalid is how many requests the daemon refused as invalid.
func rejectedInvalid(t *testing.T, d *daemon) float64 {
	t.Helper()
	v, _ := metric(parseMetrics(t, d.metricsText(t)), "sandboxd_requests_rejected_total", "reason", "invalid")
	return v
}

// runsTotal is how many runs the daemon finished, with a result.
func runsTotal(t *testing.T, d *daemon) float64 {
	t.Helper()
	v, _ := metric(parseMetrics(t, d.metricsText(t)), "sandboxd_runs_total")
	return v
}

// partialRun sends a run request's headers, saying its body is size
// bytes, and the first sent bytes of it.
func partialRun(t *testing.T, d *daemon, size, sent int) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", d.addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	head := fmt.Sprintf("POST /v1/runs HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", size)
	body := `{"runtime":"python","code":"` + strings.Repeat("#", sent)
	if _, err := io.WriteString(c, head+body[:sent]); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRequestBodyPhases: a body sent too slowly is cut at the read
// timeout, and one whose client goes away half sent ends its parsing at
// once; neither starts a run, and a bystander's run goes through while
// they hang.
func TestRequestBodyPhases(t *testing.T) {
	requireDaemon(t)
	d := startDaemon(t, daemonConfig{args: []string{"--read-timeout", phaseReadLimit.String()}})
	before := runsTotal(t, d)

	t.Run("slow body", func(t *testing.T) {
		c := partialRun(t, d, 1<<20, 100)
		start := time.Now()
		// A bystander's run, while the body hangs.
		if res := d.run(t, map[string]any{"runtime": "python", "code": "print(1)"}); res.Status != "ok" {
			t.Errorf("a run beside the hanging body: %+v", res)
		}
		// The daemon answers the cut body (a 400 naming the read
		// timeout) and
		// closes the connection.
		c.SetReadDeadline(time.Now().Add(phaseReadLimit + 30*time.Second))
		b, err := io.ReadAll(c)
		took := time.Since(start)
		if err != nil {
			t.Fatalf("the connection of a body sent too slowly was not closed: %v after %s", err, took)
		}
		if len(b) > 0 && (!strings.Contains(string(b), " 400 ") || !strings.Contains(string(b), "read timeout")) {
			t.Errorf("the answer to a body cut by the read timeout: %.300q", b)
		}
		t.Logf("a body that stopped coming was cut after %s (read timeout %s); answer %.300q", took.Round(time.Millisecond), phaseReadLimit, b)
	})

	t.Run("slow upload", func(t *testing.T) {
		sess := d.createSession(t, map[string]any{"runtime": "python"})
		c, err := net.DialTimeout("tcp", d.addr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "PUT /v1/sessions/%s/files/up.bin HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n%s", sess.ID, strings.Repeat("x", 1000))
		c.SetReadDeadline(time.Now().Add(phaseReadLimit + 30*time.Second))
		b, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("the connection of an upload sent too slowly was not closed: %v", err)
		}
		if !strings.Contains(string(b), " 400 ") || !strings.Contains(string(b), "read timeout") {
			t.Errorf("the answer to an upload cut by the read timeout: %.300q", b)
		}
		// Nothing of it is left in the workspace.
		if resp, _ := d.request(t, "GET", "/v1/sessions/"+sess.ID+"/files/up.bin", nil, nil); resp.StatusCode != 404 {
			t.Errorf("GET of the cut upload: %s; want 404", resp.Status)
		}
	})

	t.Run("client gone mid-body", func(t *testing.T) {
		before := rejectedInvalid(t, d)
		c := partialRun(t, d, 8<<20, 256<<10)
		c.Close()
		// The parse ends as soon as the body does: refused as invalid
		// (the body is cut short), well before any read timeout.
		deadline := time.Now().Add(phaseReadLimit - 500*time.Millisecond)
		for rejectedInvalid(t, d) == before {
			if time.Now().After(deadline) {
				t.Fatalf("the body of a client gone mid-body was still being read %s later", phaseReadLimit-500*time.Millisecond)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	// The bystander's run only: neither cut body started one.
	if n := runsTotal(t, d); n != before+1 {
		t.Errorf("sandboxd_runs_total went from %v to %v; want one more (the bystander's)", before, n)
	}
}

// manyFilesRun is a run request of n small input files: placing them
// takes the daemon a while (an openat, a write and a chown each).
func manyFilesRun(t *testing.T, n int) []byte {
	t.Helper()
	files := make([]map[string]string, 0, n+1)
	files = append(files, map[string]string{"name": "main.py", "content": "print(1)"})
	for i := range n {
		files = append(files, map[string]string{"name": fmt.Sprintf("f%06d", i), "content": "x"})
	}
	return mustJSON(t, map[string]any{"runtime": "python", "files": files, "limits": map[string]any{"tmpfs": "1GiB", "timeout": "60s"}})
}

// TestClientGoneDuringPlacement: a client that goes away while the daemon
// places its input files stops the placement: the run ends long before a
// whole placement would, and never starts its program (no result is
// counted). Were the placement deaf to the client, it would place every
// file and then start and cancel the sandbox, a result of its own.
func TestClientGoneDuringPlacement(t *testing.T) {
	requireDaemon(t)
	d := startDaemon(t, daemonConfig{})
	body := manyFilesRun(t, 100_000)

	// The whole request, client connected: the time a placement takes.
	start := time.Now()
	resp, out := d.request(t, "POST", "/v1/runs", body, nil)
	whole := time.Since(start)
	if resp.StatusCode != 200 {
		t.Fatalf("the run of many files: %s %.300s", resp.Status, out)
	}
	d.http.CloseIdleConnections()
	if whole < 2*time.Second {
		t.Skipf("requires a placement slow enough to watch (2s or more): 100 000 files took %s here", whole)
	}
	before := runsTotal(t, d)

	c, err := net.DialTimeout("tcp", d.addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /v1/runs HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	// Once the run is admitted (its placement begins), the client goes.
	if _, ok := d.waitGauge(t, whole, "sandboxd_runs_active", func(v float64) bool { return v == 1 }); !ok {
		t.Fatalf("the run was not admitted within %s", whole)
	}
	c.Close()
	gone := time.Now()
	if _, ok := d.waitGauge(t, 2*whole, "sandboxd_runs_active", func(v float64) bool { return v == 0 }); !ok {
		t.Fatalf("the run of a gone client still active %s later", 2*whole)
	}
	stopped := time.Since(gone)
	t.Logf("a whole placement and run took %s; the client's going stopped one %s after it left", whole.Round(time.Millisecond), stopped.Round(time.Millisecond))
	if stopped > whole/2 {
		t.Errorf("the run of a gone client took %s to stop; a whole one takes %s", stopped, whole)
	}
	// The gone client's run is one result, canceled: before its
	// program, not a failure of the sandbox.
	waitRuns(t, d, "canceled", 1)
	if n := runsTotal(t, d); n != before+1 {
		t.Errorf("sandboxd_runs_total went from %v to %v, want one more run, the canceled one", before, n)
	}
	if line := d.waitLog(regexp.MustCompile(`msg=run .*status=canceled`), 5*time.Second); line == "" || d.waitLog(regexp.MustCompile(`level=ERROR msg=run `), 0) != "" {
		t.Errorf("the canceled run's log line: %q; an error logged: %v", line, d.waitLog(regexp.MustCompile(`level=ERROR msg=run `), 0) != "")
	}
}

// runsByStatus is how many runs the daemon finished with status.
func runsByStatus(t *testing.T, d *daemon, status string) float64 {
	t.Helper()
	v, _ := metric(parseMetrics(t, d.metricsText(t)), "sandboxd_runs_total", "status", status)
	return v
}

// waitRuns waits (10s at most) until the daemon has counted n runs of
// status: a run is counted once its slot is given back, a moment after.
func waitRuns(t *testing.T, d *daemon, status string, n float64) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); runsByStatus(t, d, status) != n; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%v %s runs after 10s, want %v", runsByStatus(t, d, status), status, n)
		}
	}
}

// TestCanceledStatusQueuedAndRunning: a client that goes away while its
// run waits for a slot, and one that goes while its run runs, each get
// one canceled run (sandboxd_runs_total{status="canceled"}, logged at
// info), never an internal_error; the queued run's going leaves the
// running one, a bystander, running.
func TestCanceledStatusQueuedAndRunning(t *testing.T) {
	requireDaemon(t)
	d := startDaemon(t, daemonConfig{args: []string{"--max-concurrent", "1"}})
	sleeper := mustJSON(t, pyRun("import time\ntime.sleep(100)\n", map[string]any{"timeout": "60s"}))
	send := func(ctx context.Context) <-chan error {
		done := make(chan error, 1)
		go func() {
			_, _, err := d.do(ctx, "POST", "/v1/runs", sleeper, nil)
			done <- err
		}()
		return done
	}
	runCtx, leaveRun := context.WithTimeout(context.Background(), 60*time.Second)
	defer leaveRun()
	ran := send(runCtx)
	if _, ok := d.waitGauge(t, 30*time.Second, "sandboxd_runs_active", func(v float64) bool { return v == 1 }); !ok {
		t.Fatal("the first run was not admitted")
	}
	queueCtx, leaveQueue := context.WithCancel(context.Background())
	queued := send(queueCtx)
	if _, ok := d.waitGauge(t, 30*time.Second, "sandboxd_queue_depth", func(v float64) bool { return v == 1 }); !ok {
		t.Fatal("the second run did not queue")
	}
	leaveQueue()
	<-queued
	waitRuns(t, d, "canceled", 1)
	if v := d.gauge(t, "sandboxd_runs_active"); v != 1 || d.gauge(t, "sandboxd_queue_depth") != 0 {
		t.Errorf("after the queued client went: %v active (the bystander), %v queued", v, d.gauge(t, "sandboxd_queue_depth"))
	}
	leaveRun()
	<-ran
	waitRuns(t, d, "canceled", 2)
	if n := runsByStatus(t, d, "internal_error"); n != 0 {
		t.Errorf("%v internal errors for two clients that went away", n)
	}
	if d.waitLog(regexp.MustCompile(`level=ERROR msg=run `), 0) != "" {
		t.Errorf("a canceled run was logged as an error:\n%s", d.log.String())
	}
}
