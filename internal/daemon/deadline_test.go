package daemon

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// serveConns serves h on 127.0.0.1 behind c's caps and timeouts, as Serve
// does, and returns its address.
func serveConns(t *testing.T, c Conns, h http.Handler) (string, *connLimiter) {
	return serveConnsBuf(t, c, h, 0)
}

// smallSendBuf is a listener whose connections have a send buffer of
// sndbuf bytes. The kernel wakes a blocked writer only once a third of
// the send buffer is free; with the default (autotuned to 4 MiB) a reader
// must drain 1.3 MB per write timeout, too much for a test's short one.
type smallSendBuf struct {
	net.Listener
	sndbuf int
}

func (l smallSendBuf) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(l.sndbuf)
	}
	return c, err
}

func serveConnsBuf(t *testing.T, c Conns, h http.Handler, sndbuf int) (string, *connLimiter) {
	t.Helper()
	c, err := c.resolve(0, false, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := c.listen("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	if sndbuf > 0 {
		ln.Listener = smallSendBuf{ln.Listener, sndbuf}
	}
	hs := &http.Server{Handler: h}
	c.server(hs)
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return ln.Addr().String(), ln
}

// dialSmall dials addr with a small receive buffer, so a client that does
// not read stalls the server's writes soon.
func dialSmall(t *testing.T, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return errors.Join(err, serr)
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// streamHandler writes chunk-sized events, flushed, for dur (or until a
// write fails), and reports how it ended.
func streamHandler(chunk int, dur time.Duration, ended chan<- error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		line := []byte(strings.Repeat("x", chunk-1) + "\n")
		stop := time.Now().Add(dur)
		for time.Now().Before(stop) {
			if _, err := w.Write(line); err != nil {
				ended <- err
				return
			}
			if err := rc.Flush(); err != nil {
				ended <- err
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		ended <- nil
	})
}

// TestWriteDeadlineSlowReader: a response that streams for longer than the
// write timeout reaches a client that reads slowly but steadily, whole.
func TestWriteDeadlineSlowReader(t *testing.T) {
	ended := make(chan error, 1)
	addr, _ := serveConns(t, Conns{WriteTimeout: 300 * time.Millisecond}, streamHandler(1024, 1500*time.Millisecond, ended))
	c := dialSmall(t, addr)
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	total := 0
	for {
		n, err := c.Read(buf)
		total += n
		if err != nil {
			t.Fatalf("read after %d bytes: %v", total, err)
		}
		if strings.HasSuffix(string(buf[:n]), "0\r\n\r\n") { // the chunked body's end
			break
		}
		time.Sleep(5 * time.Millisecond) // ~400 KB/s: slower than the writer, never stalled 300ms
	}
	if err := <-ended; err != nil {
		t.Fatalf("the handler's writes failed for a reading client: %v", err)
	}
}

// TestWriteDeadlineQuietHandler: a handler that writes nothing for longer
// than the write timeout (a run answering at its end) still answers.
func TestWriteDeadlineQuietHandler(t *testing.T) {
	addr, _ := serveConns(t, Conns{WriteTimeout: 200 * time.Millisecond}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(600 * time.Millisecond)
		io.WriteString(w, "done")
	}))
	resp, err := http.Get("http://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if b, err := io.ReadAll(resp.Body); err != nil || string(b) != "done" {
		t.Fatalf("body %q, %v", b, err)
	}
}

// TestWriteDeadlineNeverRead: a client that never reads is cut off one
// write timeout after its buffers fill, and the request's context ends
// (so the run behind it is killed).
func TestWriteDeadlineNeverRead(t *testing.T) {
	ended := make(chan error, 1)
	ctxDone := make(chan error, 1)
	h := streamHandler(64<<10, time.Minute, ended)
	addr, ln := serveConns(t, Conns{WriteTimeout: 300 * time.Millisecond}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		go func() { <-r.Context().Done(); ctxDone <- r.Context().Err() }()
		h.ServeHTTP(w, r)
	}))
	c := dialSmall(t, addr)
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ended:
		if err == nil {
			t.Fatal("the handler wrote for a minute to a client that never read")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a write to a client that never reads was not cut off")
	}
	select {
	case <-ctxDone:
	case <-time.After(5 * time.Second):
		t.Fatal("the request's context did not end when its client was cut off")
	}
	waitOpen(t, ln, 0)
}

func waitOpen(t *testing.T, ln *connLimiter, want int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ln.Open() != want; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections open, want %d", ln.Open(), want)
		}
	}
}

// TestConnTimeouts: an idle keep-alive connection is closed after the
// idle timeout, and one that sends its headers slowly at the header
// timeout; both give their slot back.
func TestConnTimeouts(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	const idle, header = 300 * time.Millisecond, 400 * time.Millisecond
	addr, ln := serveConns(t, Conns{IdleTimeout: idle, ReadHeaderTimeout: header}, ok)

	t.Run("idle", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.ReadAll(resp.Body)
		start := time.Now()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
			t.Fatalf("an idle connection: %v, want EOF", err)
		}
		if got := time.Since(start); got < idle-50*time.Millisecond || got > idle+3*time.Second {
			t.Errorf("idle connection closed after %s, idle timeout %s", got, idle)
		}
	})
	t.Run("slow headers", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go func() { // a byte every 50ms: never a whole header
			for _, b := range []byte("GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("a", 1000)) {
				if ctx.Err() != nil || c.SetWriteDeadline(time.Now().Add(time.Second)) != nil {
					return
				}
				if _, err := c.Write([]byte{b}); err != nil {
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		}()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		b, err := io.ReadAll(c)
		if err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("slow headers: %v (read %q)", err, b)
		}
		if got := time.Since(start); got < header-50*time.Millisecond || got > header+3*time.Second {
			t.Errorf("slow headers cut after %s, header timeout %s", got, header)
		}
	})
	waitOpen(t, ln, 0)
}

// TestWriteDeadlineBigWrite: one write far larger than a write timeout's
// worth of the client's reading (a run's result holds its whole output)
// still reaches a client that reads steadily.
func TestWriteDeadlineBigWrite(t *testing.T) {
	const size = 2 << 20
	done := make(chan error, 1)
	addr, _ := serveConnsBuf(t, Conns{WriteTimeout: 300 * time.Millisecond}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := w.Write([]byte(strings.Repeat("x", size)))
		done <- err
	}), 64<<10)
	c := dialSmall(t, addr)
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	buf := make([]byte, 32<<10)
	total := 0
	for {
		n, err := c.Read(buf)
		total += n
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read after %d bytes: %v", total, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := <-done; err != nil {
		t.Fatalf("a %d-byte write to a client reading for %s failed: %v", size, time.Since(start), err)
	}
	if total < size {
		t.Fatalf("read %d bytes, want more than %d", total, size)
	}
	t.Logf("%d bytes in one write, read in %s", size, time.Since(start))
}
