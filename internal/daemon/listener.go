package daemon

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/sandboxd/sandboxd/internal/admission"
)

// Refusal reasons of connLimiter, as the metric labels them.
const (
	refusedPerIP = "per_ip"
	refusedTotal = "total"
)

// connLimiter is a net.Listener that caps the connections open at once, in
// all and per client IP. Unlike golang.org/x/net/netutil.LimitListener,
// which stops calling accept when full (so the kernel's backlog fills and
// every client, legitimate or not, waits), it accepts and at once closes a
// connection over a cap: the client sees a reset, not a hang, and accept
// keeps draining the backlog.
//
// The per-IP cap counts an IPv6 client by its /64 (admission.ClientKey).
//
// Loopback clients have a reserve of their own past the global cap
// (loopbackReserve connections, still under their per-IP cap), so that a
// flood from the network cannot lock out a local health check or operator.
//
// A connection counts from Accept until its first Close; closing it again
// changes nothing.
type connLimiter struct {
	net.Listener
	max, perIP, loopbackReserve int
	// refused, if set, is told each connection refused and why.
	refused func(reason string)

	mu   sync.Mutex
	open int
	byIP map[netip.Addr]int
}

// newConnLimiter caps ln's connections at max in all (plus reserve for
// loopback clients) and perIP per client address; 0 means no cap.
func newConnLimiter(ln net.Listener, max, perIP, reserve int, refused func(string)) *connLimiter {
	return &connLimiter{Listener: ln, max: max, perIP: perIP, loopbackReserve: reserve, refused: refused, byIP: make(map[netip.Addr]int)}
}

// Accept returns the next connection within the caps, closing those over
// them on the way.
func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(c)
		key := admission.ClientKey(ip)
		tc, _ := c.(*net.TCPConn)
		if reason := l.take(ip, key); reason != "" {
			// Closed before a byte is read or written, with a reset
			// (linger 0): a client that floods and keeps its ends
			// open would otherwise leave as many orphaned sockets
			// waiting in FIN_WAIT2 on the host, and each close would
			// cost a FIN exchange.
			if tc != nil {
				_ = tc.SetLinger(0)
			}
			_ = c.Close()
			if l.refused != nil {
				l.refused(reason)
			}
			continue
		}
		if tc != nil {
			// What net.Listen sets on every accepted connection
			// (conns.go turns it off there): 15s idle, 15s apart.
			_ = tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true})
		}
		return &limitedConn{Conn: c, l: l, key: key}, nil
	}
}

// take counts a new connection from ip, client key, or says why it may
// not be.
func (l *connLimiter) take(ip, key netip.Addr) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perIP > 0 && l.byIP[key] >= l.perIP {
		return refusedPerIP
	}
	if l.max > 0 {
		limit := l.max
		if ip.IsLoopback() {
			limit += l.loopbackReserve
		}
		if l.open >= limit {
			return refusedTotal
		}
	}
	l.open++
	l.byIP[key]++
	return ""
}

func (l *connLimiter) release(key netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if n := l.byIP[key] - 1; n > 0 {
		l.byIP[key] = n
	} else {
		delete(l.byIP, key)
	}
}

// Open is the number of connections accepted and not yet closed.
func (l *connLimiter) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

// remoteIP is c's peer address without its port (and without an IPv4 in
// IPv6 wrapping, so one client is one key). A peer that is not TCP counts
// as the zero address, one client.
func remoteIP(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// limitedConn gives its slot back on its first Close.
type limitedConn struct {
	net.Conn
	l      *connLimiter
	key    netip.Addr
	closed atomic.Bool
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	if c.closed.CompareAndSwap(false, true) {
		c.l.release(c.key)
	}
	return err
}
