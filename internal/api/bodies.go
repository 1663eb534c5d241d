package api

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/sandboxd/sandboxd/internal/errdefs"
	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/session"
)

// bodyBudget bounds the request bytes the daemon reads and decodes at
// once. --max-body caps one request; without a bound across them, 60
// clients each sending a 14 MiB cell held 60 bodies and their decoded
// copies in memory together (the daemon passed 800 MiB) before any queue
// behind them could say no. A request reserves its declared length (the
// whole cap when it declares none) before its body is read, and gives it
// back once the body is consumed: what it decoded is then bounded by the
// queue it waits in (admission, a session's waiting cells).
//
// One client (a token) may hold at most half of the budget, so a tenant
// that trickles large bodies in slowly cannot shut the others out. A
// request that does not fit is refused at once, never queued: a queue
// ordered by arrival would make a small request wait behind a large one,
// and the small ones are the ordinary clients.
type bodyBudget struct {
	size, perClient int64
	cap             int64 // the per-request cap (MaxBody)

	mu   sync.Mutex
	used int64
	by   map[string]int64
}

func newBodyBudget(size, maxBody int64) *bodyBudget {
	size = max(size, maxBody) // one body of the largest size always fits
	return &bodyBudget{size: size, perClient: max(size/2, maxBody), cap: maxBody, by: map[string]int64{}}
}

// buffered reports whether r's handler reads its body whole: everything but
// a file upload, which is streamed into the workspace as it comes.
func buffered(r *http.Request) bool {
	return r.Method != http.MethodPut && r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody
}

// reserve takes r's share of the budget for client and makes r's body give
// it back at EOF or Close; release (idempotent) gives it back in any case
// and must be called when the handler returns.
func (b *bodyBudget) reserve(r *http.Request, client string) (release func(), err error) {
	if !buffered(r) {
		return func() {}, nil
	}
	n := r.ContentLength
	if n < 0 || n > b.cap {
		// Unknown length (chunked), or one MaxBytesReader will cut at
		// the cap anyway.
		n = b.cap
	}
	if err := b.take(client, n); err != nil {
		return nil, err
	}
	var once sync.Once
	release = func() { once.Do(func() { b.give(client, n) }) }
	r.Body = &releasingBody{ReadCloser: r.Body, release: release}
	return release, nil
}

func (b *bodyBudget) take(client string, n int64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.used+n > b.size:
		return fmt.Errorf("%w: the daemon is reading as many request bodies as it may hold at once (%s, --max-body-memory), and this one declares %s; retry shortly",
			errdefs.ErrExhausted, limits.Bytes(b.size), limits.Bytes(n))
	case b.by[client]+n > b.perClient:
		return fmt.Errorf("%w: this client's requests being read already hold %s of the %s one client may (half of --max-body-memory), and this one declares %s; retry shortly",
			errdefs.ErrExhausted, limits.Bytes(b.by[client]), limits.Bytes(b.perClient), limits.Bytes(n))
	}
	b.used += n
	b.by[client] += n
	return nil
}

func (b *bodyBudget) give(client string, n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
	if b.by[client] -= n; b.by[client] == 0 {
		delete(b.by, client)
	}
}

// bodyClient is whose share of the budget r's body takes: its token's; an
// E2B request's API key or sandbox access token (the /e2b mount sends no
// Authorization); else the anonymous share.
func bodyClient(r *http.Request) string {
	if owner, ok := credentialOwner(r); ok {
		return owner
	}
	return Owner(r)
}

// credentialOwner is whose credential r carries, as bodyClient says, and
// whether it carries one.
func credentialOwner(r *http.Request) (string, bool) {
	if _, ok := Credential(r); ok {
		return Owner(r), true
	}
	for _, h := range []string{"X-API-KEY", "X-Access-Token"} {
		if v := r.Header.Get(h); v != "" {
			return h + ":" + session.TokenOwner(v), true
		}
	}
	return "", false
}

// tenant is whom r's runs and cells are admitted for (admission.Gate
// shares its slots and its queue among tenants): its credential's owner,
// or without one its client's address, so that token-less clients on
// different hosts are told apart. Behind a proxy they are one tenant.
func tenant(r *http.Request) string {
	if owner, ok := credentialOwner(r); ok {
		return owner
	}
	return clientAddress(r)
}

// releasingBody releases its reservation as soon as the body is read to
// its end or closed, and counts the bytes read.
type releasingBody struct {
	io.ReadCloser
	release func()
	// read is the bytes read, for Config.AnswerDone once the handler
	// returns.
	read atomic.Int64
}

func (b *releasingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.read.Add(int64(n))
	if err != nil {
		b.release()
	}
	return n, err
}

func (b *releasingBody) Close() error {
	b.release()
	return b.ReadCloser.Close()
}

// bulkBody is the size past which a request body is read whole before it
// is decoded, and decoded one at a time (Server.decodeRequest).
const bulkBody = 1 << 20

// decodeRequest decodes r's body strictly (decodeStrict) into v.
func (s *Server) decodeRequest(r *http.Request, v any) error {
	return s.decodeBody(r, func(body io.Reader) error { return decodeStrict(body, v) })
}

// decodeBody hands r's body to decode. A body past bulkBody, or of
// unknown length, is first read whole into one buffer of its declared
// size, then decoded while holding s.bulk. Decoding 14 MiB of JSON takes a
// core for a tenth of a second or more (most of it page faults on fresh
// memory), and the daemon has as many Ps for its goroutines as the host
// has cores: two such bodies decoded at once left every other client's
// requests, a steady tenant's session cells among them, waiting for the
// Go scheduler, at six times their p99 alone. One at a time leaves the
// other cores to everyone else. The read is not under s.bulk, so a client
// that sends slowly holds up only itself; and one buffer of the right
// size replaces the decoder's doubling one, which made and faulted in
// twice the memory. decode's errors are returned as they are; a failed
// read is classified by bodyError.
func (s *Server) decodeBody(r *http.Request, decode func(io.Reader) error) error {
	if r.ContentLength >= 0 && r.ContentLength <= bulkBody {
		return decode(r.Body)
	}
	size := r.ContentLength
	if size < 0 {
		size = 0 // chunked: grown as it comes, up to MaxBody
	}
	// Room for EOF besides the body, so that reading to the end (which
	// gives the body's budget back) does not grow the buffer.
	buf := bytes.NewBuffer(make([]byte, 0, size+bytes.MinRead))
	if _, err := buf.ReadFrom(r.Body); err != nil {
		return bodyError(err)
	}
	// Not given up when the client goes: the wait is bounded by the
	// bodies read at once (--max-body-memory), each decoded in well
	// under a second.
	s.bulk <- struct{}{}
	defer func() { <-s.bulk }()
	return decode(buf)
}
