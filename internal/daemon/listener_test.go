package daemon

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeConn is a connection from addr that only records its closes.
type fakeConn struct {
	net.Conn
	addr   *net.TCPAddr
	closes atomic.Int32
}

func (c *fakeConn) RemoteAddr() net.Addr { return c.addr }
func (c *fakeConn) Close() error         { c.closes.Add(1); return nil }

// fakeListener hands out conns in order, then ErrClosed.
type fakeListener struct {
	net.Listener
	conns chan *fakeConn
}

func (l *fakeListener) Accept() (net.Conn, error) {
	c, ok := <-l.conns
	if !ok {
		return nil, net.ErrClosed
	}
	return c, nil
}

func conn(ip string) *fakeConn {
	return &fakeConn{addr: &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000}}
}

func TestConnLimiter(t *testing.T) {
	cases := []struct {
		name                string
		max, perIP, reserve int
		dials               []string
		// accepted lists which dials got through (by index); the others
		// must be closed at once and counted as refused.
		accepted   []int
		refusedIP  int
		refusedTot int
		open       int
	}{
		{"no caps", 0, 0, 0, []string{"10.0.0.1", "10.0.0.1", "10.0.0.2"}, []int{0, 1, 2}, 0, 0, 3},
		{"per-IP cap", 0, 2, 0, []string{"10.0.0.1", "10.0.0.1", "10.0.0.1", "10.0.0.2"}, []int{0, 1, 3}, 1, 0, 3},
		{"global cap", 2, 0, 0, []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"}, []int{0, 1}, 0, 2, 2},
		{"v4-mapped is the same client", 0, 1, 0, []string{"10.0.0.1", "::ffff:10.0.0.1"}, []int{0}, 1, 0, 1},
		{"loopback reserve past the global cap", 2, 0, 1, []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "127.0.0.1", "::1"}, []int{0, 1, 3}, 0, 2, 3},
		{"an IPv6 /64 is one client", 0, 2, 0, []string{"2001:db8::1", "2001:db8::2", "2001:db8::ffff:1", "2001:db8:0:1::1"}, []int{0, 1, 3}, 1, 0, 3},
		{"per-IP cap holds within the reserve", 1, 1, 5, []string{"10.0.0.1", "127.0.0.1", "127.0.0.1"}, []int{0, 1}, 1, 0, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fl := &fakeListener{conns: make(chan *fakeConn, len(tc.dials))}
			var mu sync.Mutex
			refused := map[string]int{}
			l := newConnLimiter(fl, tc.max, tc.perIP, tc.reserve, func(r string) { mu.Lock(); refused[r]++; mu.Unlock() })
			var dialed []*fakeConn
			for _, ip := range tc.dials {
				c := conn(ip)
				dialed = append(dialed, c)
				fl.conns <- c
			}
			close(fl.conns)
			var got []net.Conn
			for {
				c, err := l.Accept()
				if err != nil {
					// Accept goes on past refusals to the listener's own end.
					if !errors.Is(err, net.ErrClosed) {
						t.Fatal(err)
					}
					break
				}
				got = append(got, c)
			}
			if len(got) != len(tc.accepted) {
				t.Fatalf("accepted %d connections, want %d", len(got), len(tc.accepted))
			}
			want := map[int]bool{}
			for i, idx := range tc.accepted {
				want[idx] = true
				if got[i].(*limitedConn).Conn != dialed[idx] {
					t.Errorf("accepted #%d is not dial #%d", i, idx)
				}
			}
			for i, c := range dialed {
				if n := c.closes.Load(); want[i] != (n == 0) || n > 1 {
					t.Errorf("dial #%d (%s): closed %d times, accepted %v", i, tc.dials[i], n, want[i])
				}
			}
			if refused[refusedPerIP] != tc.refusedIP || refused[refusedTotal] != tc.refusedTot {
				t.Errorf("refused %v, want per_ip %d, total %d", refused, tc.refusedIP, tc.refusedTot)
			}
			if l.Open() != tc.open {
				t.Errorf("open %d, want %d", l.Open(), tc.open)
			}
			// Closing twice gives the slot back once.
			for _, c := range got {
				c.Close()
				c.Close()
			}
			if l.Open() != 0 || len(l.byIP) != 0 {
				t.Errorf("after closing all: open %d, by IP %v", l.Open(), l.byIP)
			}
		})
	}
}

// TestConnLimiterHammer: a slot given back is taken again, and the count
// stays exact under concurrent accepts and double closes.
func TestConnLimiterHammer(t *testing.T) {
	const n, max = 2000, 8
	fl := &fakeListener{conns: make(chan *fakeConn)}
	var refusals atomic.Int32
	l := newConnLimiter(fl, max, 4, 0, func(string) { refusals.Add(1) })
	go func() {
		for i := range n {
			fl.conns <- conn([]string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}[i%3])
		}
		close(fl.conns)
	}()
	var wg sync.WaitGroup
	accepted := 0
	for {
		c, err := l.Accept()
		if err != nil {
			break
		}
		accepted++
		if o := l.Open(); o > max {
			t.Fatalf("%d open, cap %d", o, max)
		}
		wg.Add(2)
		for range 2 {
			go func() { defer wg.Done(); c.Close() }()
		}
		if accepted%4 == 0 {
			wg.Wait() // let slots free now and then, so refusals and reuse mix
		}
	}
	wg.Wait()
	if l.Open() != 0 {
		t.Errorf("open %d after every close", l.Open())
	}
	if accepted+int(refusals.Load()) != n {
		t.Errorf("accepted %d + refused %d != %d dialed", accepted, refusals.Load(), n)
	}
	if accepted < n/4 {
		t.Errorf("only %d of %d accepted: slots are not given back", accepted, n)
	}
}

// TestConnLimiterTCP: on a real listener, a connection let in has TCP
// keep-alive on (the listener leaves it off, so refusals cost no socket
// options), and one over the per-IP cap is reset at once.
func TestConnLimiterTCP(t *testing.T) {
	l, err := Conns{PerIP: 1}.listen("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	first, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rc, err := c.(*limitedConn).Conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var keepAlive int
	_ = rc.Control(func(fd uintptr) { keepAlive, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE) })
	if err != nil || keepAlive != 1 {
		t.Errorf("an accepted connection's SO_KEEPALIVE = %d (%v), want 1", keepAlive, err)
	}

	go func() { _, _ = l.Accept() }() // refuses the second, then waits
	// The reset may come before Go's connect has seen the handshake
	// through (Dial fails), or after (the first read does).
	second, err := net.Dial("tcp", l.Addr().String())
	if err == nil {
		defer second.Close()
		_ = second.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, err = second.Read(make([]byte, 1))
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("a connection over the per-IP cap: %v, want a reset", err)
	}
}
