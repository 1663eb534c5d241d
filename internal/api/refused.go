package api

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/sandboxd/sandboxd/internal/admission"
	"github.com/sandboxd/sandboxd/internal/errdefs"
)

// Defaults of Config.RefusalRate and Config.RefusalBurst: a client may be
// refused 32 times at once, and 4 times a second after that. A client
// that errs now and then never waits; a loop of requests the daemon must
// refuse runs at 4 a second instead of the several hundred it could.
const (
	defaultRefusalRate  = 4
	defaultRefusalBurst = 32
)

// maxRefusalWait is the longest a request waits for its client's turn
// (Server.maxWait; tests shorten it): past it the request is answered 429
// unread, so that a client with many requests waiting at once holds none
// of them for long.
const maxRefusalWait = 10 * time.Second

// charged reports whether an answer of status counts as a refusal of the
// client's making: a request the daemon could not take as sent (400, 413,
// 415, 422), without the daemon's token (401), refused as a web page's
// (403), or past the client's share of a queue or budget (429). Not 404,
// 405 or 409: clients that poll (a session that has ended, a file not yet
// written) get those in the ordinary course.
func charged(status int) bool {
	switch status {
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden,
		http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType,
		http.StatusUnprocessableEntity, http.StatusTooManyRequests:
		return true
	}
	return false
}

// refusalClient is whom r's refusals are counted against: the owner of
// its token when it carries one of the daemon's tokens, else its client
// address (an IPv6 /64). A credential the daemon did not issue names no
// one: counting by it would let a client shed its debt by sending another.
// Behind a proxy without tokens, every client is the proxy's address.
func (s *Server) refusalClient(r *http.Request) string {
	if len(s.cfg.Tokens) > 0 && s.validToken(r) {
		return Owner(r)
	}
	return clientAddress(r)
}

// clientAddress names r's client by its address: "address 192.0.2.7",
// an IPv6 client by its /64 (admission.ClientKey).
func clientAddress(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		host = admission.ClientKey(ip).String()
	}
	return "address " + host
}

// probe reports whether r is a liveness or readiness probe, which never
// waits: a probe from an address that clients share (a node's, behind
// kube-proxy) must not fail because one of those clients is slowed.
func probe(r *http.Request) bool {
	return r.Method == http.MethodGet && (r.URL.Path == "/healthz" || r.URL.Path == "/readyz")
}

// awaitTurn holds r, before any of it is read, while its client is
// refused faster than the configured rate (admission.Refusals). It reports
// whether r may be served: false when the client went away while it
// waited, or when its wait would pass maxRefusalWait, in which case r
// waited that long and was answered 429.
func (s *Server) awaitTurn(w http.ResponseWriter, r *http.Request, client string) bool {
	if s.refusals == nil || probe(r) {
		return true
	}
	wait := s.refusals.Delay(client)
	if wait == 0 {
		return true
	}
	s.metrics.Slowed()
	t := time.NewTimer(min(wait, s.maxWait))
	defer t.Stop()
	select {
	case <-r.Context().Done():
		return false
	case <-t.C:
	}
	if wait <= s.maxWait {
		return true
	}
	s.metrics.Rejected("refused_too_often")
	writeError(w, fmt.Errorf("%w: this client was refused more often than the daemon allows (%d times at once, then %g a second: --refusal-burst, --refusal-rate), so each of its requests waits its turn; this one waited %s and its turn is %s further off. Fix the requests that fail before sending more",
		errdefs.ErrExhausted, s.cfg.RefusalBurst, s.cfg.RefusalRate, s.maxWait, (wait-s.maxWait).Round(time.Millisecond)))
	return false
}

// refusalWriter notes the status of the answer it carries, so that
// ServeHTTP can charge a refusal to its client. It unwraps for
// http.ResponseController (Hijack for WebSockets, deadlines).
type refusalWriter struct {
	http.ResponseWriter
	status int
}

func (w *refusalWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *refusalWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

// Flush is for callers that type-assert http.Flusher.
func (w *refusalWriter) Flush() { _ = http.NewResponseController(w.ResponseWriter).Flush() }

func (w *refusalWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// chargeRefusal counts w's answer against client if it was a refusal,
// and says once in the log when the client runs out of refusals.
func (s *Server) chargeRefusal(w *refusalWriter, client string) {
	if s.refusals == nil || !charged(w.status) {
		return
	}
	if s.refusals.Charge(client) {
		s.log.Warn("a client is refused too often: its requests now wait their turn",
			"client", client, "last_status", w.status, "burst", s.cfg.RefusalBurst, "rate", s.cfg.RefusalRate)
	}
}
