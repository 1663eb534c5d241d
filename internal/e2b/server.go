// Package e2b serves E2B's sandbox API over sandboxd's sessions, so the
// official E2B SDKs (`@e2b/code-interpreter`, `e2b`) run unchanged against
// a sandboxd daemon: its control plane (create, list, kill, timeout,
// connect), its sandbox agent envd (files over HTTP, the Filesystem and
// Process Connect services) and its code interpreter (execute, contexts).
package e2b

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/sandboxd/sandboxd/internal/e2b/envd/filesystem/filesystemconnect"
	"github.com/sandboxd/sandboxd/internal/e2b/envd/process/processconnect"
	"github.com/sandboxd/sandboxd/internal/errdefs"
	"github.com/sandboxd/sandboxd/internal/metrics"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/session"
)

// Config configures a Server. Zero fields take the defaults noted.
type Config struct {
	// Sessions holds the sandboxes' sessions.
	Sessions *session.Manager
	// Tokens are the daemon's tokens: an E2B API key must be one of them
	// (none: any key is taken, and every key is one owner, "anonymous",
	// as a token-less daemon's /v1 is).
	Tokens []string
	// CellTimeout is the longest a cell or a command may run: E2B has the
	// client time out, sandboxd the server too (default 5 minutes, the
	// default ceiling).
	CellTimeout time.Duration
	// MaxTimeout is the longest sandbox timeout a client may ask for
	// (default 1 hour, the sessions' longest idle timeout).
	MaxTimeout time.Duration
	// Domain, if set, serves SDKs older than 2.7.0, which name a sandbox
	// in the host: "<port>-<sandbox id>.<Domain>" (see hostRoute).
	Domain string
	// Metrics, if set, counts the cells and commands run
	// (sandboxd_session_cells_total), as the API's.
	Metrics *metrics.Metrics
	Logger  *slog.Logger
	// Now is the clock (tests inject one).
	Now func() time.Time
}

// Server is an http.Handler serving E2B's API; mount it under a prefix
// with http.StripPrefix. Close stops its sandboxes' timers.
type Server struct {
	cfg   Config
	log   *slog.Logger
	plane *http.ServeMux // the control plane: /sandboxes...
	agent *http.ServeMux // one sandbox's envd and code interpreter

	mu        sync.Mutex
	sandboxes map[string]*sandbox
	closed    bool
}

// New returns a Server over cfg.Sessions.
func New(cfg Config) *Server {
	if cfg.CellTimeout == 0 {
		cfg.CellTimeout = 5 * time.Minute
	}
	if cfg.MaxTimeout == 0 {
		cfg.MaxTimeout = time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{cfg: cfg, log: cfg.Logger, plane: http.NewServeMux(), agent: http.NewServeMux(), sandboxes: map[string]*sandbox{}}
	s.plane.HandleFunc("POST /sandboxes", s.handleCreate)
	s.plane.HandleFunc("POST /v2/sandboxes", s.handleCreate)
	s.plane.HandleFunc("GET /sandboxes", s.handleList)
	s.plane.HandleFunc("GET /v2/sandboxes", s.handleList)
	s.plane.HandleFunc("GET /sandboxes/{id}", s.handleInfo)
	s.plane.HandleFunc("DELETE /sandboxes/{id}", s.handleKill)
	s.plane.HandleFunc("POST /sandboxes/{id}/timeout", s.handleTimeout)
	s.plane.HandleFunc("POST /sandboxes/{id}/refreshes", s.handleTimeout)
	s.plane.HandleFunc("POST /sandboxes/{id}/connect", s.handleConnect)
	s.plane.HandleFunc("POST /v2/sandboxes/{id}/connect", s.handleConnect)
	s.plane.HandleFunc("POST /sandboxes/{id}/resume", s.handleConnect)
	s.plane.HandleFunc("/", s.handleNotOffered)

	s.agent.HandleFunc("GET /health", s.handleHealth)
	s.agent.HandleFunc("GET /files", s.handleFileGet)
	s.agent.HandleFunc("POST /files", s.handleFilePost)
	s.agent.HandleFunc("POST /execute", s.handleExecute)
	s.agent.HandleFunc("GET /contexts", s.handleContextList)
	s.agent.HandleFunc("POST /contexts", s.handleContextCreate)
	s.agent.HandleFunc("DELETE /contexts/{ctx}", s.handleContextDelete)
	s.agent.HandleFunc("POST /contexts/{ctx}/restart", s.handleContextRestart)
	s.agent.Handle(filesystemconnect.NewFilesystemHandler(&filesystemService{s: s}))
	s.agent.Handle(processconnect.NewProcessHandler(&processService{s: s}))
	s.agent.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, fmt.Errorf("%w: no sandbox endpoint %s %s", errdefs.ErrNotFound, r.Method, r.URL.Path))
	})
	return s
}

// headerSandboxID names the sandbox of a call when one base URL
// (E2B_SANDBOX_URL) serves every sandbox. E2b-Sandbox-Port comes with it
// (49983 for envd, 49999 for the code interpreter); their paths do not
// overlap, so it is not needed.
const headerSandboxID = "E2b-Sandbox-Id"

// ServeHTTP sends a request for a sandbox (it names one, in a header or
// in its host) to the sandbox's agent, once its access token is checked,
// and any other to the control plane, once its API key is.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := r.Header.Get(headerSandboxID)
	if id == "" {
		id = s.hostRoute(r.Host)
	}
	if id == "" {
		if owner, ok := s.apiOwner(w, r); ok {
			s.plane.ServeHTTP(w, r.WithContext(withOwner(r.Context(), owner)))
		}
		return
	}
	sb, err := s.agentSandbox(r, id)
	if err != nil {
		writeError(w, err)
		return
	}
	s.agent.ServeHTTP(w, r.WithContext(withSandbox(r.Context(), sb)))
}

// HostRouter serves the sandbox host names of E2B SDKs before 2.7.0
// ("<port>-<id>.<Domain>", at the root of the host) from the Server
// mounted at prefix of next: it prefixes such a request's path and
// hands it to next, so it goes through next's checks as /e2b's requests
// do. Other hosts go to next as they are. Without a Domain it is next.
func (s *Server) HostRouter(prefix string, next http.Handler) http.Handler {
	if s.cfg.Domain == "" {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.hostRoute(r.Host) != "" {
			r = r.Clone(r.Context())
			r.URL.Path = prefix + r.URL.Path
			if r.URL.RawPath != "" {
				r.URL.RawPath = prefix + r.URL.RawPath
			}
		}
		next.ServeHTTP(w, r)
	})
}

// hostRoute is the sandbox id a host "<port>-<id>.<Domain>" names, or "".
func (s *Server) hostRoute(host string) string {
	if s.cfg.Domain == "" {
		return ""
	}
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		host = host[:i]
	}
	label, ok := strings.CutSuffix(strings.ToLower(host), "."+strings.ToLower(s.cfg.Domain))
	if !ok || strings.Contains(label, ".") {
		return ""
	}
	_, id, ok := strings.Cut(label, "-")
	if !ok {
		return ""
	}
	return id
}

// apiOwner checks a control-plane request's API key (X-API-KEY, or a
// bearer token) and returns the owner of its sandboxes: the key's
// sessions, as session.Owner names a token's. A bad key is a 401.
func (s *Server) apiOwner(w http.ResponseWriter, r *http.Request) (string, bool) {
	key := r.Header.Get("X-API-KEY")
	if key == "" {
		if scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " "); strings.EqualFold(scheme, "Bearer") {
			key = strings.TrimSpace(tok)
		}
	}
	if len(s.cfg.Tokens) == 0 {
		return "anonymous", true
	}
	ok := 0
	for _, want := range s.cfg.Tokens {
		ok |= subtle.ConstantTimeCompare([]byte(key), []byte(want))
	}
	if key == "" || ok != 1 {
		writeError(w, fmt.Errorf("%w: send one of the daemon's tokens as the E2B API key (E2B_API_KEY, the X-API-KEY header)", errdefs.ErrUnauthorized))
		return "", false
	}
	return session.Owner("Bearer " + key), true
}

// agentSandbox finds the sandbox a request names and checks its access
// token (X-Access-Token from envd calls, E2B-Traffic-Access-Token from the
// code interpreter's). A sandbox not running is errGone: the SDKs read
// E2B's 502 as "the sandbox is gone" (isRunning() is false).
func (s *Server) agentSandbox(r *http.Request, id string) (*sandbox, error) {
	sb := s.sandbox(id)
	if sb == nil {
		return nil, fmt.Errorf("%w: sandbox %s is not running (it was killed or timed out)", errGone, run.Quote(id, run.MaxName))
	}
	tok := r.Header.Get("X-Access-Token")
	if tok == "" {
		tok = r.Header.Get("E2B-Traffic-Access-Token")
	}
	if subtle.ConstantTimeCompare([]byte(tok), []byte(sb.token)) != 1 {
		return nil, fmt.Errorf("%w: send the sandbox's access token (envdAccessToken) as X-Access-Token", errdefs.ErrUnauthorized)
	}
	return sb, nil
}

// Close stops every sandbox's timeout timer; the sessions are the
// Manager's to close.
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for _, sb := range s.sandboxes {
		sb.stopTimer()
	}
	s.sandboxes = map[string]*sandbox{}
}

// errGone: the sandbox is not running. E2B's proxy answers 502 for it.
var errGone = errors.New("sandbox not running")

// errNotOffered: an E2B feature sandboxd does not have (custom templates,
// pause and resume, ...): 501, whose message the SDKs show.
var errNotOffered = errors.New("not offered by sandboxd")

// apiError is E2B's error body; the SDKs read code (kill() returns false
// on 404) and message.
type apiError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// statusOf maps an error onto E2B's statuses: sandboxd's classes
// (internal/errdefs), 502 for a sandbox gone and 501 for a feature not
// offered.
func statusOf(err error) int {
	switch {
	case errors.Is(err, errGone):
		return http.StatusBadGateway
	case errors.Is(err, errNotOffered):
		return http.StatusNotImplemented
	}
	var maxErr *http.MaxBytesError
	if errors.As(err, &maxErr) {
		return http.StatusRequestEntityTooLarge
	}
	return errdefs.HTTPStatus(errdefs.ClassOf(err))
}

func writeError(w http.ResponseWriter, err error) {
	status := statusOf(err)
	if status == http.StatusTooManyRequests && !errors.Is(err, session.ErrTooMany) {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, apiError{Code: status, Message: err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
