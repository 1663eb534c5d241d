package api

import (
	"context"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/sandboxd/sandboxd/internal/admission"
	"github.com/sandboxd/sandboxd/internal/errdefs"
	"github.com/sandboxd/sandboxd/internal/metrics"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/runtimes"
	"github.com/sandboxd/sandboxd/internal/session"
	"github.com/sandboxd/sandboxd/internal/spool"
)

// Config configures a Server. Zero fields take the defaults noted.
type Config struct {
	// Tokens, if any, are the bearer tokens clients may send, one of them
	// required as "Authorization: Bearer <token>" on every endpoint but
	// /healthz, /readyz and /openapi.json. Each token is an owner of
	// sessions: one token cannot see another's.
	Tokens []string
	// AllowAnyHost serves any Host header without a token: the operator
	// put a token-less daemon on a non-loopback address on purpose
	// (--insecure-no-token). Without it and without Tokens, only loopback
	// Host names (localhost, 127.x.y.z, [::1]) and Addr are served, so a
	// web page cannot reach the daemon by DNS rebinding.
	AllowAnyHost bool
	// Addr, if set, is the address the daemon listens on ("127.0.0.1:8080");
	// a token-less daemon serves it as a Host too.
	Addr string
	// Runtimes is the registry /v1/runtimes lists and the short form of a
	// run resolves in (default runtimes.Default()).
	Runtimes *runtimes.Registry
	// Gate, if set, is the admission gate the runner admits through:
	// /readyz fails while it is full.
	Gate *admission.Gate
	// Metrics is the registry /metrics serves and the API counts
	// rejections and cells in (default: a registry of its own).
	Metrics *metrics.Metrics
	// Sessions, if set, serves /v1/sessions; without, those answer 503.
	Sessions *session.Manager
	// Forward, if set, proxies a request for a session of another
	// replica to it (forward.go); without, such a request is a 404
	// naming the replica (Sandboxd-Replica), for a router in front.
	Forward *Forwarder
	// MaxBody caps a request body (default 16 MiB).
	MaxBody int64
	// MaxBodyMemory caps the bytes of request bodies being read at once
	// (default 4 MaxBody; never less than MaxBody): see bodyBudget.
	MaxBodyMemory int64
	// RefusalRate and RefusalBurst slow down a client the daemon keeps
	// refusing (refused.go, admission.Refusals): past RefusalBurst
	// refusals at once (default 32), its requests wait so that it is
	// refused at most RefusalRate times a second (default 4). A negative
	// RefusalRate turns this off.
	RefusalRate  float64
	RefusalBurst int
	// Ready, if set, is consulted by /readyz besides the gate (e.g. "the
	// host can still confine").
	Ready func() error
	// AnswerDone, if set, hears the bytes of output (and files) each
	// answer with a result held, once the answer is sent or cut, and the
	// bytes of each request body read, once its handler returns: the
	// daemon gives the heap's memory back to the host after large ones.
	AnswerDone func(held int64)
	// Spool, if set, is where a run's output past output.SpoolAt waits
	// for its answer (runs and Piston's execute), instead of the heap:
	// answers held by slow clients then cost the daemon disk, not memory.
	Spool  *spool.Dir
	Logger *slog.Logger
	// Now is the clock (tests inject one).
	Now func() time.Time
}

// Server serves the API. Create it with New; it is an http.Handler.
type Server struct {
	cfg     Config
	runner  run.Runner
	log     *slog.Logger
	mux     *http.ServeMux
	metrics *metrics.Metrics
	bodies  *bodyBudget
	// refusals is nil when Config.RefusalRate is negative; maxWait is
	// maxRefusalWait.
	refusals *admission.Refusals
	maxWait  time.Duration
	// bulk is held while a large body is decoded (decodeRequest).
	bulk chan struct{}
	// Extra routes (the MCP endpoint) are added with Handle.
}

// New returns a Server whose runs go to r: the daemon gives it the
// executor wrapped in admission, metrics and the run log.
func New(r run.Runner, cfg Config) *Server {
	if cfg.MaxBody == 0 {
		cfg.MaxBody = 16 << 20
	}
	if cfg.Runtimes == nil {
		cfg.Runtimes = runtimes.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New(metrics.Sources{})
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxBodyMemory == 0 {
		cfg.MaxBodyMemory = 4 * cfg.MaxBody
	}
	if cfg.RefusalRate == 0 {
		cfg.RefusalRate = defaultRefusalRate
	}
	if cfg.RefusalBurst <= 0 {
		cfg.RefusalBurst = defaultRefusalBurst
	}
	s := &Server{cfg: cfg, runner: r, log: cfg.Logger, mux: http.NewServeMux(), metrics: cfg.Metrics,
		bodies: newBodyBudget(cfg.MaxBodyMemory, cfg.MaxBody), maxWait: maxRefusalWait, bulk: make(chan struct{}, 1)}
	if cfg.RefusalRate > 0 {
		s.refusals = admission.NewRefusals(cfg.RefusalRate, cfg.RefusalBurst, cfg.Now)
	}
	for _, r := range s.routes() {
		h := r.handler
		if r.auth {
			h = s.authenticate(h)
		}
		s.mux.Handle(r.pattern, h)
	}
	return s
}

// route is one endpoint; routes() is the table the OpenAPI test checks.
type route struct {
	pattern string
	handler http.Handler
	auth    bool
}

func (s *Server) routes() []route {
	return []route{
		{"POST /v1/runs", http.HandlerFunc(s.handleRun), true},
		{"GET /v1/runtimes", http.HandlerFunc(s.handleRuntimes), true},
		{"GET /healthz", http.HandlerFunc(s.handleHealth), false},
		{"GET /readyz", http.HandlerFunc(s.handleReady), false},
		{"GET /metrics", s.metrics.Handler(), true},
		{"GET /openapi.json", http.HandlerFunc(handleOpenAPI), false},
		{"POST /api/v2/execute", http.HandlerFunc(s.handlePistonExecute), true},
		{"GET /api/v2/runtimes", http.HandlerFunc(s.handlePistonRuntimes), true},
		{"POST /v1/sessions", http.HandlerFunc(s.handleSessionCreate), true},
		{"GET /v1/sessions", http.HandlerFunc(s.handleSessionList), true},
		{"GET /v1/sessions/{id}", http.HandlerFunc(s.handleSessionGet), true},
		{"DELETE /v1/sessions/{id}", http.HandlerFunc(s.handleSessionDelete), true},
		{"POST /v1/sessions/{id}/exec", http.HandlerFunc(s.handleSessionExec), true},
		{"POST /v1/sessions/{id}/interrupt", http.HandlerFunc(s.handleSessionInterrupt), true},
		{"GET /v1/sessions/{id}/files", http.HandlerFunc(s.handleFileList), true},
		{"PUT /v1/sessions/{id}/files/{path...}", http.HandlerFunc(s.handleFilePut), true},
		{"GET /v1/sessions/{id}/files/{path...}", http.HandlerFunc(s.handleFileGet), true},
		{"DELETE /v1/sessions/{id}/files/{path...}", http.HandlerFunc(s.handleFileDelete), true},
	}
}

// Mount serves h under prefix ("/e2b": every path below it, with the
// prefix stripped), behind the checks against web pages and the body
// limits but not the bearer token: h speaks another API, which checks
// its own credentials (the E2B API's keys and access tokens).
func (s *Server) Mount(prefix string, h http.Handler) {
	s.mux.Handle(prefix+"/", http.StripPrefix(prefix, h))
}

// Handle adds an authenticated route (used for /mcp).
func (s *Server) Handle(pattern string, h http.Handler) {
	s.mux.Handle(pattern, s.authenticate(h))
}

// ServeHTTP caps the body and routes; unknown paths and methods get the
// API's JSON errors, not net/http's text. A client refused too often
// waits its turn first (refused.go). What only a web page sends (a
// foreign Host without a token, a cross-origin Origin or Sec-Fetch-Site,
// a text/plain POST to /v1) is refused first (browser.go). A session path with "." or ".."
// segments (literal or encoded), "//", a NUL or a backslash is refused
// before routing: ServeMux would clean it and redirect elsewhere.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBody)
	r = r.WithContext(admission.WithTenant(r.Context(), tenant(r)))
	client := s.refusalClient(r)
	if !s.awaitTurn(w, r, client) {
		return
	}
	rw := &refusalWriter{ResponseWriter: w}
	defer s.chargeRefusal(rw, client)
	w = rw
	if s.refuseBrowser(w, r) {
		return
	}
	if why := unsafePath(r); why != "" {
		s.reject(w, fmt.Errorf("%w: path %q is not allowed: it has %s; name sessions and workspace files by clean relative paths", errdefs.ErrInvalidArgument, r.URL.EscapedPath(), why))
		return
	}
	// Before the body budget: a forwarded body streams through, never
	// held here.
	if s.forward(w, r) {
		return
	}
	release, err := s.bodies.reserve(r, bodyClient(r))
	if err != nil {
		s.metrics.Rejected("body_memory")
		writeError(w, err)
		return
	}
	defer release()
	if body, ok := r.Body.(*releasingBody); ok {
		// The body and what was decoded from it are garbage once the
		// handler returns.
		defer func() { s.answered(body.read.Load()) }()
	}
	h, pattern := s.mux.Handler(r)
	if pattern == "" {
		// ServeMux answers 404 or 405 itself; say it in JSON.
		rec := &statusRecorder{}
		h.ServeHTTP(rec, r)
		if rec.status == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", rec.Header().Get("Allow"))
			writeError(w, fmt.Errorf("%w: %s does not take %s", errdefs.ErrMethod, r.URL.Path, r.Method))
			return
		}
		writeError(w, fmt.Errorf("%w: no endpoint %s %s", errdefs.ErrNotFound, r.Method, r.URL.Path))
		return
	}
	// The mux itself serves, so the handler sees the path's wildcards
	// (Handler does not set them).
	s.mux.ServeHTTP(w, r)
}

type statusRecorder struct {
	header http.Header
	status int
}

func (r *statusRecorder) Header() http.Header {
	if r.header == nil {
		r.header = http.Header{}
	}
	return r.header
}
func (r *statusRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *statusRecorder) WriteHeader(s int)           { r.status = s }

func (s *Server) authenticate(h http.Handler) http.Handler {
	if len(s.cfg.Tokens) == 0 {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.authorized(w, r) {
			h.ServeHTTP(w, r)
		}
	})
}

// authorized reports whether r carries one of the tokens (always, when
// there are none); if not, it answers 401.
func (s *Server) authorized(w http.ResponseWriter, r *http.Request) bool {
	if len(s.cfg.Tokens) == 0 {
		return true
	}
	if !s.validToken(r) {
		s.metrics.Rejected("unauthorized")
		writeError(w, fmt.Errorf("%w: send the daemon's token as \"Authorization: Bearer <token>\"", errdefs.ErrUnauthorized))
		return false
	}
	return true
}

// validToken reports whether r carries one of the daemon's tokens. Each
// token is compared in constant time, and all of them are.
func (s *Server) validToken(r *http.Request) bool {
	token, sent := Credential(r)
	got := []byte(token)
	ok := 0
	for _, want := range s.cfg.Tokens {
		ok |= subtle.ConstantTimeCompare(got, []byte(want))
	}
	return sent && ok == 1
}

// Credential is the token r carries and whether it carries one: in
// "Authorization: Bearer <token>", or "Authorization: token <token>" as
// Jupyter's clients send it (the scheme is case-insensitive, RFC 7235);
// or, on a WebSocket handshake only, in ?token=, because a browser cannot
// set headers on a WebSocket. Anywhere else a token in the URL would end
// up in logs and histories, so it is not looked at.
func Credential(r *http.Request) (string, bool) {
	if scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok &&
		(strings.EqualFold(scheme, "Bearer") || strings.EqualFold(scheme, "token")) {
		token = strings.TrimSpace(token)
		return token, token != ""
	}
	if r.Method == http.MethodGet && strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		if token := r.URL.Query().Get("token"); token != "" {
			return token, true
		}
	}
	return "", false
}

// Owner is whose sessions (and Jupyter kernels) a request may see: its
// token's (see Credential), or "anonymous" without one.
func Owner(r *http.Request) string {
	token, _ := Credential(r)
	return session.TokenOwner(token)
}

func (s *Server) handleHealth(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// handleReady fails when a run would be refused (the queue is full), the
// replica is draining before it stops, or the host can no longer confine,
// so a load balancer sends work elsewhere.
func (s *Server) handleReady(w http.ResponseWriter, _ *http.Request) {
	if m := s.cfg.Sessions; m != nil && m.Draining() {
		writeError(w, fmt.Errorf("%w: replica %q is draining before it stops: it takes no new sessions, and serves its own until they end", errdefs.ErrUnavailable, m.Replica()))
		return
	}
	g := s.cfg.Gate
	if g != nil && g.Full() {
		writeError(w, fmt.Errorf("%w: all %d run slots are busy and the queue is full", errdefs.ErrUnavailable, g.Capacity()))
		return
	}
	if s.cfg.Ready != nil {
		if err := s.cfg.Ready(); err != nil {
			writeError(w, fmt.Errorf("%w: %w", errdefs.ErrUnavailable, err))
			return
		}
	}
	body := map[string]any{"status": "ready"}
	if g != nil {
		body["running"], body["waiting"] = g.Running(), g.Waiting()
	}
	writeJSON(w, http.StatusOK, body)
}

// RuntimeInfo is one entry of GET /v1/runtimes.
type RuntimeInfo struct {
	Name       string   `json:"name"`
	Version    string   `json:"version"`
	Aliases    []string `json:"aliases"`
	Extensions []string `json:"extensions"`
	Backends   []string `json:"backends"`
	Compiled   bool     `json:"compiled"`
	// rt is the registry's entry.
	rt *runtimes.Runtime
}

func (s *Server) runtimeInfos(ctx context.Context) []RuntimeInfo {
	g := s.cfg.Runtimes
	var out []RuntimeInfo
	for _, rt := range g.All() {
		if !g.Available(rt) {
			continue
		}
		v, err := g.Version(ctx, rt)
		if err != nil {
			continue
		}
		out = append(out, RuntimeInfo{Name: rt.Name, Version: v, Aliases: nonNil(rt.Aliases), Extensions: nonNil(rt.Extensions), Backends: rt.Backends(), Compiled: rt.Compile != nil, rt: rt})
	}
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (s *Server) handleRuntimes(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"runtimes": s.runtimeInfos(r.Context())})
}

// wantsStream reports whether the client asked for NDJSON streaming.
func wantsStream(r *http.Request) bool {
	if v := r.URL.Query().Get("stream"); v == "1" || v == "true" {
		return true
	}
	return strings.Contains(r.Header.Get("Accept"), ndjson)
}
