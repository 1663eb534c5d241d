package tests

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Connection hygiene (issue 14): about 20 000 idle keep-alive connections,
// each after one unauthenticated GET /healthz, once exhausted the daemon's
// fds, and legitimate runs timed out. These tests drive a real daemon with
// short timeouts.

// connTimeouts are the daemon's flags for these tests: short, so the tests
// see each timeout act.
const (
	connIdle        = 15 * time.Second
	connHeaderLimit = 2 * time.Second
	// connWriteLimit is longer: the kernel wakes a blocked write only
	// once a third of the send buffer (autotuned up to 4 MiB) is free, so
	// a reader must drain ~1.3 MB per write timeout; at 5s that is
	// ~270 KB/s, well under the slow reader's ~1 MB/s.
	connWriteLimit = 5 * time.Second
)

func startConnDaemon(t *testing.T) *daemon {
	t.Helper()
	return startDaemon(t, daemonConfig{args: []string{
		"--idle-timeout", connIdle.String(),
		"--read-header-timeout", connHeaderLimit.String(),
		"--write-timeout", connWriteLimit.String(),
	}})
}

// idleConn is a connection that has made one GET /healthz and is left
// open, as a keep-alive pool would.
type idleConn struct {
	c  net.Conn
	br *bufio.Reader
}

// dialHealthz connects from local (a loopback address, so the per-IP cap
// counts it apart) and GETs /healthz over the connection, keeping it.
func dialHealthz(addr string, local net.IP) (*idleConn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: local}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	ic := &idleConn{c: c, br: bufio.NewReader(c)}
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"); err != nil {
		c.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(ic.br, nil)
	if err != nil {
		c.Close()
		return nil, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET /healthz: %s", resp.Status)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return ic, nil
}

// closedByPeer reports whether the daemon has closed c (EOF or reset)
// within d.
func closedByPeer(ic *idleConn, d time.Duration) bool {
	ic.c.SetReadDeadline(time.Now().Add(d))
	_, err := ic.br.ReadByte()
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}

// TestConnIdleFlood: thousands of idle keep-alive connections from several
// clients, each after a GET /healthz, neither stop a legitimate run nor
// outlive the idle timeout; one client past its cap is refused at once.
func TestConnIdleFlood(t *testing.T) {
	requireDaemon(t)
	d := startConnDaemon(t)

	// 12 loopback clients of 250 each: under the per-IP cap (256) and
	// the global one (4096), within this process's fds (Go raised the
	// soft limit to the hard one at start; fewer clients if that is low).
	const perClient = 250
	clients := 12
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < uint64(clients*perClient+1024) {
		clients = int(lim.Cur-1024) / perClient
		if clients < 2 {
			t.Skipf("requires an RLIMIT_NOFILE of at least %d to hold a flood of connections; this process has %d", 2*perClient+1024, lim.Cur)
		}
		t.Logf("RLIMIT_NOFILE is %d: %d clients only", lim.Cur, clients)
	}
	start := time.Now()
	conns := make([][]*idleConn, clients)
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ip := net.IPv4(127, 0, 0, byte(2+i))
			for range perClient {
				ic, err := dialHealthz(d.addr, ip)
				if err != nil {
					errs <- fmt.Errorf("client %s, connection %d: %w", ip, len(conns[i])+1, err)
					return
				}
				conns[i] = append(conns[i], ic)
			}
		}()
	}
	wg.Wait()
	close(errs)
	t.Cleanup(func() {
		for _, cs := range conns {
			for _, ic := range cs {
				ic.c.Close()
			}
		}
	})
	for err := range errs {
		t.Fatal(err)
	}
	opened := time.Since(start)
	t.Logf("%d idle connections open after a GET /healthz each, in %s", clients*perClient, opened.Round(time.Millisecond))
	if opened > connIdle/2 {
		t.Fatalf("opening the connections took %s, too close to the idle timeout (%s) for the test to mean anything", opened, connIdle)
	}
	if n := d.gauge(t, "sandboxd_connections_open"); n < float64(clients*perClient) {
		t.Errorf("sandboxd_connections_open = %v with %d idle connections held", n, clients*perClient)
	}

	// A client over its cap is closed at once, and counted.
	ip := net.IPv4(127, 0, 0, 2)
	for range 256 - perClient {
		ic, err := dialHealthz(d.addr, ip)
		if err != nil {
			t.Fatalf("a connection under the per-IP cap: %v", err)
		}
		conns[0] = append(conns[0], ic)
	}
	if _, err := dialHealthz(d.addr, ip); err == nil {
		t.Errorf("connection 257 from %s was served: no per-IP cap", ip)
	}
	if n := d.gauge(t, "sandboxd_connections_refused_total", "reason", "per_ip"); n < 1 {
		t.Errorf(`sandboxd_connections_refused_total{reason="per_ip"} = %v after a refusal`, n)
	}

	// A legitimate run still goes through, promptly.
	ranAt := time.Now()
	r := d.run(t, pyRun("print('still serving')\n", nil))
	if r.Status != "ok" || string(r.Stdout) != "still serving\n" {
		t.Errorf("a run amid %d idle connections: %s", clients*perClient, r)
	}
	if took := time.Since(ranAt); took > 20*time.Second {
		t.Errorf("a run amid the idle connections took %s", took)
	}

	// The idle timeout closes them all (counted from each one's last
	// request, all within the first half of it).
	open := 0
	waitUntil := start.Add(opened + connIdle + 5*time.Second)
	for _, cs := range conns {
		for _, ic := range cs {
			if !closedByPeer(ic, max(time.Until(waitUntil), 10*time.Millisecond)) {
				open++
			}
		}
	}
	if open > 0 {
		t.Errorf("%d idle connections still open %s after the last one's request (idle timeout %s)", open, time.Since(start)-opened, connIdle)
	}
	if n, ok := d.waitGauge(t, 5*time.Second, "sandboxd_connections_open", func(v float64) bool { return v <= 2 }); !ok {
		t.Errorf("sandboxd_connections_open = %v after the idle timeout closed the connections", n)
	}
}

// TestConnSlowHeaders: a client that sends its headers a byte at a time
// is cut at the header timeout.
func TestConnSlowHeaders(t *testing.T) {
	requireDaemon(t)
	d := startConnDaemon(t)
	c, err := net.Dial("tcp", d.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for _, b := range []byte("GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + strings.Repeat("a", 10000)) {
			if ctx.Err() != nil {
				return
			}
			c.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := c.Write([]byte{b}); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	c.SetReadDeadline(time.Now().Add(connHeaderLimit + 10*time.Second))
	_, err = io.ReadAll(c)
	took := time.Since(start)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("a client sending its headers slowly was not cut: %v after %s", err, took)
	}
	if took < connHeaderLimit-100*time.Millisecond || took > connHeaderLimit+5*time.Second {
		t.Errorf("cut after %s; header timeout %s", took, connHeaderLimit)
	}
}

// smallBufferClient is an HTTP client whose connections have a small
// receive buffer, so that when it does not read, the daemon's writes stall
// soon.
func smallBufferClient() *http.Client {
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 8192) })
		return errors.Join(err, serr)
	}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true, DisableCompression: true}}
}

// TestConnStreamWriteDeadline: a streamed run's writes each have a
// deadline, not the response as a whole. A client reading slowly but
// steadily gets the whole stream, long past the write timeout; one that
// never reads is cut a write timeout after its buffers fill, and its run
// is killed, not left running for nobody.
func TestConnStreamWriteDeadline(t *testing.T) {
	requireDaemon(t)
	d := startConnDaemon(t)

	t.Run("slow reader", func(t *testing.T) {
		// 4 MiB of events and the 4 MiB result, read at ~1 MB/s: writes
		// wait on the reader, none for long, and the stream outlasts the
		// write timeout.
		const mib = 4
		code := fmt.Sprintf("import os\nfor _ in range(%d):\n    os.write(1, b'x' * 65535 + b'\\n')\n", mib*16)
		req := mustJSON(t, map[string]any{"runtime": "python", "code": code, "limits": map[string]any{"output": "16MiB", "timeout": "60s"}})
		hr, _ := http.NewRequest("POST", d.url+"/v1/runs?stream=1", strings.NewReader(string(req)))
		hr.Header.Set("Content-Type", "application/json")
		start := time.Now()
		resp, err := smallBufferClient().Do(hr)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body := readSlowly(t, resp.Body, 4096, 4*time.Millisecond)
		took := time.Since(start)
		events := readAllEvents(t, bytes.NewReader(body))
		last := events[len(events)-1]
		if last.Result == nil || last.Result.Status != "ok" {
			t.Fatalf("the stream's last event: %+v", last)
		}
		out := 0
		for _, ev := range events {
			if ev.Type == "stdout" {
				out += len(ev.Data)
			}
		}
		if out != mib<<20 {
			t.Errorf("stdout in events: %d bytes, want %d", out, mib<<20)
		}
		t.Logf("%d MiB streamed to a slow reader in %s (write timeout %s)", mib, took.Round(time.Millisecond), connWriteLimit)
		if took < connWriteLimit {
			t.Logf("the reader was faster than meant: the stream did not outlast one write timeout")
		}
	})

	t.Run("never reads", func(t *testing.T) {
		token := runToken()
		// 16 MiB (more than the socket buffers hold), then a long sleep:
		// only the client's going can end this run early.
		code := "import os, time\nfor _ in range(256):\n    os.write(1, b'x' * 65535 + b'\\n')\ntime.sleep(100)\n"
		req := mustJSON(t, map[string]any{"runtime": "python", "code": code, "env": map[string]string{token: "1"},
			"limits": map[string]any{"output": "32MiB", "timeout": "120s"}})
		hr, _ := http.NewRequest("POST", d.url+"/v1/runs?stream=1", strings.NewReader(string(req)))
		hr.Header.Set("Content-Type", "application/json")
		resp, err := smallBufferClient().Do(hr)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		id := waitRunProcs(t, token)
		// Read nothing more. The daemon's write stalls once the buffers
		// are full, fails a write timeout later, and the run is killed.
		if left := waitGone(connWriteLimit+30*time.Second, func() []hostProc { return append(runProcs(id), tokenProcs(token)...) }); len(left) > 0 {
			t.Fatalf("%s after the run was started, its client never reading, %d process(es) of it still live", connWriteLimit+30*time.Second, len(left))
		}
		if n, ok := d.waitGauge(t, 10*time.Second, "sandboxd_runs_active", func(v float64) bool { return v == 0 }); !ok {
			t.Errorf("sandboxd_runs_active = %v after the unread run's client was cut", n)
		}
		// And the connection is gone: reading now finds the stream cut
		// short, with no result.
		b, _ := io.ReadAll(resp.Body)
		if strings.Contains(string(b), `"result"`) {
			t.Errorf("the unread stream ended with a result: the run was not cut")
		}
	})
}
