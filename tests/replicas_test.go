package tests

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Several replicas behind one Service: a session's requests may land on
// any replica, which forwards them to the replica the session's id names
// (--peer-url-template); a replica being removed drains (--drain).

// TestSessionsAcrossReplicas: a session created on replica B is used
// through replica A as if A held it (cells keep their state, files go in
// and out, a streamed cell streams), only with the token, never in a loop;
// with B stopped, A says the session is gone and names B, and goes on
// serving its own work.
//
// B is named "localhost", so A reaches it by the template
// http://{replica}:PORT without any DNS beyond /etc/hosts: no packet
// leaves the loopback.
func TestSessionsAcrossReplicas(t *testing.T) {
	requireDaemon(t)
	const token = "replicas-token"
	b := startDaemon(t, daemonConfig{token: token, args: []string{"--replica", "localhost"}})
	_, port, err := net.SplitHostPort(b.addr)
	if err != nil {
		t.Fatal(err)
	}
	a := startDaemon(t, daemonConfig{token: token, args: []string{"--replica", "a", "--peer-url-template", "http://{replica}:" + port}})

	s := b.createSession(t, map[string]any{})
	if !strings.HasPrefix(s.ID, "localhost-") {
		t.Fatalf("B's session id %q does not name B", s.ID)
	}
	// Cells through A keep their state on B.
	a.okCell(t, s.ID, "x = 41")
	if c := a.okCell(t, s.ID, "x + 1"); c.Result["text/plain"] != "42" {
		t.Errorf("x + 1 through A: %s", c)
	}
	if got := a.sessionGet(t, s.ID); got.ID != s.ID {
		t.Errorf("GET through A: %+v", got)
	}
	// Files in through A are B's; out through A are B's.
	if resp, body := a.request(t, "PUT", "/v1/sessions/"+s.ID+"/files/in/data.txt", []byte("through a\n"), nil); resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT through A: %s %s", resp.Status, body)
	}
	if resp, body := b.request(t, "GET", "/v1/sessions/"+s.ID+"/files/in/data.txt", nil, nil); resp.StatusCode != 200 || string(body) != "through a\n" {
		t.Errorf("the file on B: %s %q", resp.Status, body)
	}
	a.okCell(t, s.ID, "open('out.txt', 'w').write(open('in/data.txt').read().upper())")
	if resp, body := a.request(t, "GET", "/v1/sessions/"+s.ID+"/files/out.txt", nil, nil); resp.StatusCode != 200 || string(body) != "THROUGH A\n" {
		t.Errorf("GET a file through A: %s %q", resp.Status, body)
	}
	streamThrough(t, a, s.ID)

	// Without the token A refuses, and B never hears of it.
	resp, body := a.request(t, "POST", "/v1/sessions/"+s.ID+"/exec", []byte(`{"code":"x = 0"}`), http.Header{"Authorization": {""}})
	wantAPIError(t, resp, body, http.StatusUnauthorized, "unauthorized")
	// A request already forwarded once is not forwarded again: A
	// answers itself, naming the replica.
	resp, body = a.request(t, "POST", "/v1/sessions/"+s.ID+"/exec", []byte(`{"code":"x = 0"}`), http.Header{"Sandboxd-Forwarded-By": {"c"}})
	wantAPIError(t, resp, body, http.StatusNotFound, "not_found")
	if r := resp.Header.Get("Sandboxd-Replica"); r != "localhost" {
		t.Errorf("Sandboxd-Replica = %q", r)
	}
	if c := a.okCell(t, s.ID, "x"); c.Result["text/plain"] != "41" {
		t.Errorf("x after the refused requests: %s", c)
	}
	if n := a.gauge(t, "sandboxd_requests_forwarded_total", "outcome", "answered"); n < 8 {
		t.Errorf("A counted %v forwarded requests answered, want at least 8", n)
	}

	// B stops: its sessions end with it, and A says so.
	b.stop(t, 20*time.Second)
	resp, body = a.request(t, "POST", "/v1/sessions/"+s.ID+"/exec", []byte(`{"code":"x"}`), nil)
	msg := wantAPIError(t, resp, body, http.StatusNotFound, "not_found")
	if !strings.Contains(msg, `replica "localhost", which is gone`) || !strings.Contains(msg, s.ID) {
		t.Errorf("with B stopped: %q", msg)
	}
	if r := resp.Header.Get("Sandboxd-Replica"); r != "localhost" {
		t.Errorf("Sandboxd-Replica = %q", r)
	}
	// A's own work goes on.
	if r := a.run(t, pyRun("print(6*7)", nil)); r.Status != "ok" || string(r.Stdout) != "42\n" {
		t.Errorf("a run on A: %s %q", r.Status, r.Stdout)
	}
	own := a.createSession(t, map[string]any{})
	a.okCell(t, own.ID, "1")
}

// streamThrough runs a streamed cell of session id through d and checks
// its first output came while the cell still ran.
func streamThrough(t *testing.T, d *daemon, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code := "import time\nfor i in range(3):\n    print('tick', i, flush=True)\n    time.sleep(0.4)\nx"
	resp, err := d.streamCell(ctx, id, mustJSON(t, map[string]any{"code": code}), nil, "?stream=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("streamed cell: %s %s", resp.Status, b)
	}
	var first, last cellEvent
	var stdout []byte
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		ev, err := decodeCellEvent(sc.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type == "stdout" {
			if first.Type == "" {
				first = ev
			}
			stdout = append(stdout, ev.Data...)
		}
		last = ev
	}
	if last.Result == nil || last.Result.Status != "ok" || string(stdout) != "tick 0\ntick 1\ntick 2\n" || last.Result.Result["text/plain"] != "41" {
		t.Fatalf("streamed cell: stdout %q, last event %+v", stdout, last)
	}
	// The cell takes 1.2 s; its first tick came well before its end.
	if gap := last.arrived.Sub(first.arrived); gap < 500*time.Millisecond {
		t.Errorf("the first output came only %s before the result: not streamed through", gap)
	}
}

// TestDrain: a SIGTERMed daemon with --drain fails readiness and refuses
// new sessions with a 503 that says why, while its sessions' cells and
// runs are still served, each answer closing its connection; it exits once the last session is deleted, not
// before.
func TestDrain(t *testing.T) {
	requireDaemon(t)
	d := startDaemon(t, daemonConfig{args: []string{"--drain", "60s", "--replica", "drainer"}})
	s := d.createSession(t, map[string]any{})
	d.okCell(t, s.ID, "x = 1")
	d.signal(t, syscall.SIGTERM)
	waitReadyz(t, d, http.StatusServiceUnavailable)
	resp, body := d.request(t, "GET", "/readyz", nil, nil)
	if msg := wantAPIError(t, resp, body, http.StatusServiceUnavailable, "unavailable"); !strings.Contains(msg, `replica "drainer" is draining`) {
		t.Errorf("readyz while draining: %q", msg)
	}
	// Each answer while draining closes its connection: a client's next
	// request opens a new one, which a Service sends to a replica that
	// is not draining, instead of queueing behind this one's keep-alive.
	if !resp.Close {
		t.Error("an answer while draining left its connection open (no Connection: close)")
	}
	resp, body = d.request(t, "POST", "/v1/sessions", []byte(`{}`), nil)
	if msg := wantAPIError(t, resp, body, http.StatusServiceUnavailable, "unavailable"); !strings.Contains(msg, `replica "drainer" is draining`) || resp.Header.Get("Retry-After") == "" {
		t.Errorf("a new session while draining: %q, Retry-After %q", msg, resp.Header.Get("Retry-After"))
	}
	if c := d.okCell(t, s.ID, "x + 1"); c.Result["text/plain"] != "2" {
		t.Errorf("a cell while draining: %s", c)
	}
	if r := d.run(t, pyRun("print('still')", nil)); r.Status != "ok" {
		t.Errorf("a run while draining: %s", r.Status)
	}
	if _, ok := d.wait(time.Second); ok {
		t.Fatal("the daemon exited with a session still held")
	}
	if resp, body := d.request(t, "DELETE", "/v1/sessions/"+s.ID, nil, nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE: %s %s", resp.Status, body)
	}
	if code, ok := d.wait(20 * time.Second); !ok || code != 0 {
		t.Fatalf("after the last session was deleted: exited=%v code=%d", ok, code)
	}
	if d.waitLog(regexp.MustCompile(`drained: no session left`), 5*time.Second) == "" {
		t.Error("the log does not say the daemon drained")
	}
}

// TestDrainTimeout: sessions that do not end within --drain are closed,
// and the daemon exits cleanly, leaving nothing of them.
func TestDrainTimeout(t *testing.T) {
	requireDaemon(t)
	d := startDaemon(t, daemonConfig{args: []string{"--drain", "2s"}})
	s := d.createSession(t, map[string]any{})
	d.okCell(t, s.ID, "1")
	start := time.Now()
	d.signal(t, syscall.SIGTERM)
	code, ok := d.wait(30 * time.Second)
	if !ok || code != 0 {
		t.Fatalf("after the drain timeout: exited=%v code=%d", ok, code)
	}
	if took := time.Since(start); took < 2*time.Second {
		t.Errorf("exited %s after SIGTERM, before the drain timeout", took)
	}
	if d.waitLog(regexp.MustCompile(`drain timeout: closing the sessions left`), 5*time.Second) == "" {
		t.Error("the log does not say the drain timed out")
	}
}

// waitReadyz polls /readyz until it answers status.
func waitReadyz(t *testing.T, d *daemon, status int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, _, err := d.do(context.Background(), "GET", "/readyz", nil, nil)
		if err == nil && resp.StatusCode == status {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz did not answer %d within 15s (last: %v %v)", status, resp, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
