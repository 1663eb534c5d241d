package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Conns bounds the daemon's HTTP connections: how many are open at once,
// and how long each part of a request may take. A zero field takes its
// default (see RATIONALE.md, "Connection hygiene", for the numbers).
type Conns struct {
	// Max is the connections open at once (default 4096). It may not
	// exceed RLIMIT_NOFILE less the fds kept for runs (nofileReserve); the
	// default is lowered to fit.
	Max int
	// PerIP is the connections open at once from one client address, an
	// IPv6 client's /64 counting as one (default 256; negative: no cap,
	// for a daemon behind a proxy that is its only client).
	PerIP int
	// ReadHeaderTimeout is how long a client may take to send a request's
	// headers (default 10s).
	ReadHeaderTimeout time.Duration
	// ReadTimeout is how long it may take to send the whole request, body
	// included (default 3m: a 16 MiB body at 1 Mbit/s takes 134s).
	ReadTimeout time.Duration
	// WriteTimeout is how long each write of a response may block on a
	// client that does not read (default 30s). It bounds each write, not
	// the response: a run may stream for minutes.
	WriteTimeout time.Duration
	// IdleTimeout is how long a keep-alive connection may wait for its
	// next request (default 60s).
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's headers (default 64 KiB).
	MaxHeaderBytes int
}

// Defaults of Conns.
const (
	defaultMaxConns       = 4096
	defaultMaxConnsPerIP  = 256
	defaultMaxHeaderBytes = 64 << 10
	// loopbackReserve is the connections past Max kept for loopback
	// clients: a health check or an operator's curl still gets in while
	// the network has taken every slot.
	loopbackReserve = 32
	// nofileReserve is the fds kept out of the connection cap for the
	// rest of the daemon: each run holds a dozen or so (its pipes, pidfd,
	// cgroup and state files), warm pools and sessions hold theirs
	// between runs, and the listener, logs and Go runtime a few more.
	nofileReserve = 1024
)

// ErrConns: a connection setting that cannot hold.
var ErrConns = errors.New("connection limits")

// resolve fills c's defaults and checks it against nofile, the fds the
// process may hold (ok false: unknown).
func (c Conns) resolve(nofile uint64, ok bool, log *slog.Logger) (Conns, error) {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.ReadHeaderTimeout, 10*time.Second)
	def(&c.ReadTimeout, 3*time.Minute)
	def(&c.WriteTimeout, 30*time.Second)
	def(&c.IdleTimeout, 60*time.Second)
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = defaultMaxHeaderBytes
	}
	if c.PerIP == 0 {
		c.PerIP = defaultMaxConnsPerIP
	}
	for _, d := range []time.Duration{c.ReadHeaderTimeout, c.ReadTimeout, c.WriteTimeout, c.IdleTimeout} {
		if d < 0 {
			return c, fmt.Errorf("%w: a negative timeout (%s)", ErrConns, d)
		}
	}
	if c.Max < 0 || c.MaxHeaderBytes < 0 {
		return c, fmt.Errorf("%w: a negative cap", ErrConns)
	}
	ceiling := 0
	if ok {
		// Keep half the fds at least for the rest on a small limit.
		ceiling = int(min(nofile, 1<<30)) - min(nofileReserve, int(min(nofile, 1<<30))/2) - loopbackReserve
		if ceiling < 1 {
			return c, fmt.Errorf("%w: RLIMIT_NOFILE is %d, too few for any connection", ErrConns, nofile)
		}
	}
	switch {
	case c.Max == 0 && ceiling > 0 && ceiling < defaultMaxConns:
		c.Max = ceiling
		log.Warn("connection cap lowered to fit RLIMIT_NOFILE", "max_conns", c.Max, "nofile", nofile)
	case c.Max == 0:
		c.Max = defaultMaxConns
	case ceiling > 0 && c.Max > ceiling:
		return c, fmt.Errorf("%w: --max-conns %d is more than RLIMIT_NOFILE (%d) leaves past the fds kept for runs: at most %d", ErrConns, c.Max, nofile, ceiling)
	}
	return c, nil
}

// listen is cfg's listener behind c's caps; refused hears each
// connection turned away. Go's TCP keep-alive is off on the listener, so
// that a connection refused over a cap costs no socket options:
// connLimiter turns it on for those it lets in.
func (c Conns) listen(addr string, refused func(reason string)) (*connLimiter, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, err
	}
	perIP := max(c.PerIP, 0)
	return newConnLimiter(ln, c.Max, perIP, loopbackReserve, refused), nil
}

// server sets c's timeouts on hs and wraps its handler with the per-write
// deadline. WriteTimeout is deliberately left unset: it would cut every
// response at one fixed age, streamed runs included. It also closes, at
// Shutdown, the connections that have sent no request yet (freshConns).
func (c Conns) server(hs *http.Server) {
	hs.ReadHeaderTimeout = c.ReadHeaderTimeout
	hs.ReadTimeout = c.ReadTimeout
	hs.IdleTimeout = c.IdleTimeout
	hs.MaxHeaderBytes = c.MaxHeaderBytes
	hs.Handler = writeDeadlines(hs.Handler, c.WriteTimeout)
	fresh := &freshConns{conns: map[net.Conn]struct{}{}}
	hs.ConnState = fresh.track
	hs.RegisterOnShutdown(fresh.shutdown)
}

// freshConns are the connections that have not sent a request yet
// (http.StateNew). Server.Shutdown closes idle connections at once but
// counts a new one idle only after 5 seconds, so a client's spare
// connection (an HTTP client that dials ahead, a pool kept warm) held
// the daemon's exit that long: a shutting-down daemon closes them itself,
// the ones that come after the listener closed included.
type freshConns struct {
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	shutting bool
}

func (f *freshConns) track(c net.Conn, st http.ConnState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case st != http.StateNew:
		delete(f.conns, c)
	case f.shutting:
		c.Close()
	default:
		f.conns[c] = struct{}{}
	}
}

// shutdown runs once Shutdown has closed the listeners.
func (f *freshConns) shutdown() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.shutting = true
	for c := range f.conns {
		c.Close()
		delete(f.conns, c)
	}
}
