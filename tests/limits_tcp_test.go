package tests

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// tcpFillProgram opens loopback TCP connections in the sandbox's own
// network namespace, asks for 4 MiB buffers each way (the host allows it:
// net.core.wmem_max/rmem_max), writes until every send would block and
// never reads: everything sent sits in socket buffers. It stops at 450 MiB
// queued, 240 sockets or 20 s, reports, and holds the buffers for 3 s
// while the test's bystander uses TCP on the host.
const tcpFillProgram = `import json, socket, time
BUF = 4 << 20
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(128)
port = srv.getsockname()[1]
chunk = b"x" * (1 << 16)
socks, sent = [], 0
t0 = time.time()
def fill(s):
    n = 0
    s.setblocking(False)
    while True:
        try:
            n += s.send(chunk)
        except BlockingIOError:
            return n
while sent < 450 << 20 and len(socks) < 240 and time.time() - t0 < 20:
    c = socket.socket()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUF)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUF)
    c.connect(("127.0.0.1", port))
    a, _ = srv.accept()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUF)
    socks += [c, a]
    sent += fill(c) + fill(a)
print(json.dumps({"sent": sent, "sockets": len(socks)}), flush=True)
time.sleep(3)
`

// TestTCPBufferMemoryLimit: a run's TCP socket buffers count against its
// memory limit. On cgroup v1 the kernel charges them only when the run's
// cgroup has memory.kmem.tcp.limit_in_bytes set (the daemon sets it to the
// memory limit); before, 64MiB runs queued 450 MiB. On v2 they are charged
// to memory.max. While the attacker holds its buffers, host root still
// opens and uses TCP connections on loopback.
func TestTCPBufferMemoryLimit(t *testing.T) {
	requireSandbox(t)
	const limit = 64 * mib
	base := hostTCPMem(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var peak int64
	wg.Add(2)
	go func() {
		defer wg.Done()
		for {
			peak = max(peak, hostTCPMem(t)-base)
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	var bystanderOK int
	var bystanderErrs []string
	go func() {
		defer wg.Done()
		for {
			if err := loopbackEcho(1 * mib); err != nil {
				bystanderErrs = append(bystanderErrs, err.Error())
			} else {
				bystanderOK++
			}
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	r, code := runJSON(t, runSpec{code: tcpFillProgram, flags: []string{"--memory", "64MiB", "--timeout", "60s"}, timeout: 2 * time.Minute})
	close(stop)
	wg.Wait()

	if r.Status != "ok" && r.Status != "memory_limit" {
		t.Fatalf("status %s (exit %d): want ok (sends refused at the limit) or memory_limit\n%s", r.Status, code, r)
	}
	var rep struct{ Sent, Sockets int64 }
	if r.Status == "ok" {
		if err := json.Unmarshal(bytes.TrimSpace(r.Stdout), &rep); err != nil {
			t.Fatalf("decode the program's report: %v\n%s", err, r)
		}
		// Past the limit the kernel still forces one small skb per
		// socket through; 64 KiB a socket is a generous bound of that.
		if bound := int64(limit) + rep.Sockets*64*kib; rep.Sent > bound {
			t.Errorf("the run queued %.1f MiB in %d TCP sockets under a 64MiB memory limit (bound %.1f MiB): socket buffers are not charged to it", float64(rep.Sent)/mib, rep.Sockets, float64(bound)/mib)
		}
		if rep.Sent < 16*mib {
			t.Errorf("the run queued only %.1f MiB: the test proves nothing", float64(rep.Sent)/mib)
		}
	}
	// The host's TCP memory (all namespaces) rose by no more than the
	// limit, with room for other tests' traffic.
	if peak > 256*mib {
		t.Errorf("the host's TCP memory rose by %.1f MiB during the run, far past its 64MiB limit", float64(peak)/mib)
	}
	if len(bystanderErrs) > 0 || bystanderOK == 0 {
		t.Errorf("host root's loopback TCP failed while the run held its buffers: %d ok, errors %v", bystanderOK, bystanderErrs)
	}
	t.Logf("status %s, queued %.1f MiB in %d sockets, host TCP memory +%.1f MiB at most, %d bystander transfers", r.Status, float64(rep.Sent)/mib, rep.Sockets, float64(peak)/mib, bystanderOK)
}

// hostTCPMem is the host's TCP socket memory in bytes (the "mem" pages of
// /proc/net/sockstat, which count every network namespace).
func hostTCPMem(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/net/sockstat")
	if err != nil {
		t.Error(err)
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "TCP:" {
			continue
		}
		for i := 1; i+1 < len(f); i += 2 {
			if f[i] == "mem" {
				n, _ := strconv.ParseInt(f[i+1], 10, 64)
				return n * int64(os.Getpagesize())
			}
		}
	}
	return 0
}

// loopbackEcho sends n bytes over a fresh loopback TCP connection of the
// host and reads them all on the other side, in 10 s at most.
func loopbackEcho(n int) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	got := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		m, err := io.Copy(io.Discard, c)
		if err == nil && m != int64(n) {
			err = io.ErrUnexpectedEOF
		}
		got <- err
	}()
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 10*time.Second)
	if err != nil {
		return err
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, err = c.Write(make([]byte, n))
	c.Close()
	if err != nil {
		return err
	}
	return <-got
}
