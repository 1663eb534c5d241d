package e2b

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sandboxd/sandboxd/internal/errdefs"
	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/session"
)

// A sandbox is one E2B sandbox: a Python session (its default context,
// whose id is the sandbox's and whose workspace is the sandbox's files)
// and the sessions of its other contexts, with E2B's own lifetime: it is
// killed when its timeout passes, whether it is used or not.
type sandbox struct {
	id, owner string
	// token is the sandbox's access token: the SDK sends it back on every
	// call to the sandbox (envdAccessToken, trafficAccessToken).
	token    string
	template string
	metadata map[string]string
	env      map[string]string
	started  time.Time

	mu       sync.Mutex
	end      time.Time
	timer    *time.Timer
	contexts []codeContext // contexts[0] is the default Python one
}

// codeContext is a code interpreter context: one session.
type codeContext struct {
	ID       string `json:"id"`
	Language string `json:"language"`
	Cwd      string `json:"cwd"`
	// def marks the language's default context, which runCode without
	// a context uses; contexts made by createCodeContext are others.
	def bool
	// session is the context's session: its id at first, another one
	// after a restart.
	session string
}

// The templates sandboxd serves: E2B's code interpreter, and its base
// template, whose sandboxes run commands and keep files as well.
var templates = map[string]bool{"code-interpreter-v1": true, "code-interpreter": true, "base": true}

// envdVersion is the envd version sandboxd reports. The SDKs choose by it
// which calls to make: from 0.4.0 they send no default user, and below
// 0.5.7 files go up as multipart forms (both are served).
const envdVersion = "0.5.6"

// homeDir is the E2B user's home, where the SDK puts files by default:
// the session's workspace.
const homeDir = "/home/user"

type ownerKey struct{}
type sandboxKey struct{}

func withOwner(ctx context.Context, owner string) context.Context {
	return context.WithValue(ctx, ownerKey{}, owner)
}

func ownerFrom(ctx context.Context) string { s, _ := ctx.Value(ownerKey{}).(string); return s }

func withSandbox(ctx context.Context, sb *sandbox) context.Context {
	return context.WithValue(ctx, sandboxKey{}, sb)
}

func sandboxFrom(ctx context.Context) *sandbox {
	sb, _ := ctx.Value(sandboxKey{}).(*sandbox)
	return sb
}

// createRequest is POST /sandboxes. Unknown fields are ignored, as E2B's
// API does: newer SDKs add fields, and refusing them would break the
// drop-in. The fields that ask for what sandboxd does not offer are
// decoded so they can be refused by name.
type createRequest struct {
	TemplateID          string            `json:"templateID"`
	Timeout             *int64            `json:"timeout"`
	EnvVars             map[string]string `json:"envVars"`
	Metadata            map[string]string `json:"metadata"`
	AutoPause           bool              `json:"autoPause"`
	AllowInternetAccess *bool             `json:"allow_internet_access"`
	MCP                 json.RawMessage   `json:"mcp"`
	VolumeMounts        json.RawMessage   `json:"volumeMounts"`
}

// defaultTimeout is E2B's default sandbox timeout.
const defaultTimeout = 300 * time.Second

// check refuses what sandboxd does not offer, naming it.
func (c *createRequest) check(maxTimeout time.Duration) (time.Duration, error) {
	if c.TemplateID == "" {
		c.TemplateID = "code-interpreter-v1"
	}
	switch {
	case !templates[c.TemplateID]:
		return 0, fmt.Errorf("%w: template %s: custom templates are not offered; sandboxd runs the code-interpreter-v1 template (Python with numpy, pandas and matplotlib; JavaScript contexts on node)", errNotOffered, run.Quote(c.TemplateID, run.MaxName))
	case c.AutoPause:
		return 0, fmt.Errorf("%w: autoPause: pause and resume are not offered; a sandbox is killed at its timeout", errNotOffered)
	case c.AllowInternetAccess != nil && *c.AllowInternetAccess:
		return 0, fmt.Errorf("%w: allow_internet_access: sandboxes have no network (loopback only)", errNotOffered)
	case len(c.MCP) > 0 && string(c.MCP) != "null":
		return 0, fmt.Errorf("%w: mcp: the MCP gateway is not offered; sandboxd serves MCP itself at /mcp", errNotOffered)
	case len(c.VolumeMounts) > 0 && string(c.VolumeMounts) != "null" && string(c.VolumeMounts) != "[]":
		return 0, fmt.Errorf("%w: volumeMounts: volumes are not offered", errNotOffered)
	}
	return timeoutOf(c.Timeout, maxTimeout)
}

// timeoutOf checks a timeout in seconds: nil is the default; 1 second up
// to max.
func timeoutOf(sec *int64, max time.Duration) (time.Duration, error) {
	if sec == nil {
		return min(defaultTimeout, max), nil
	}
	if *sec < 1 || *sec > int64(max/time.Second) {
		return 0, fmt.Errorf("%w: timeout %d s: must be between 1 s and %d s", errdefs.ErrInvalidArgument, *sec, int64(max/time.Second))
	}
	return time.Duration(*sec) * time.Second, nil
}

// sandboxBody is the create and connect answer.
type sandboxBody struct {
	SandboxID          string  `json:"sandboxID"`
	TemplateID         string  `json:"templateID"`
	ClientID           string  `json:"clientID"`
	EnvdVersion        string  `json:"envdVersion"`
	EnvdAccessToken    string  `json:"envdAccessToken"`
	TrafficAccessToken string  `json:"trafficAccessToken"`
	Domain             *string `json:"domain"`
}

func (s *Server) handleCreate(w http.ResponseWriter, r *http.Request) {
	var req createRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, fmt.Errorf("%w: the request body: %w", errdefs.ErrInvalidArgument, err))
		return
	}
	timeout, err := req.check(s.cfg.MaxTimeout)
	if err != nil {
		writeError(w, err)
		return
	}
	owner := ownerFrom(r.Context())
	sess, err := s.newSession(r.Context(), owner, "python", req.EnvVars)
	if err != nil {
		writeError(w, err)
		return
	}
	now := s.cfg.Now()
	sb := &sandbox{
		id: sess.ID(), owner: owner, token: newToken(), template: req.TemplateID,
		metadata: req.Metadata, env: req.EnvVars, started: now, end: now.Add(timeout),
		contexts: []codeContext{{ID: sess.ID(), Language: "python", Cwd: homeDir, def: true, session: sess.ID()}},
	}
	if !s.add(sb, timeout) {
		_ = s.cfg.Sessions.Delete(owner, sess.ID())
		writeError(w, fmt.Errorf("%w: the daemon is shutting down", errdefs.ErrUnavailable))
		return
	}
	s.log.Info("e2b sandbox created", "sandbox", sb.id, "template", sb.template, "timeout", timeout)
	writeJSON(w, http.StatusCreated, s.body(sb))
}

func (s *Server) body(sb *sandbox) sandboxBody {
	return sandboxBody{
		SandboxID: sb.id, TemplateID: sb.template, ClientID: "sandboxd", EnvdVersion: envdVersion,
		EnvdAccessToken: sb.token, TrafficAccessToken: sb.token,
	}
}

// newSession starts a session of runtime for a sandbox's context. Its
// idle timeout is the longest a sandbox may live: the sandbox's own timer
// ends it, not idleness.
func (s *Server) newSession(ctx context.Context, owner, runtime string, env map[string]string) (*session.Session, error) {
	spec := &run.SessionSpec{
		Runtime:     runtime,
		Env:         env,
		IdleTimeout: limits.Duration(s.cfg.MaxTimeout),
		Limits:      limits.Limits{Timeout: limits.Duration(s.cfg.CellTimeout)},
	}
	return s.cfg.Sessions.Create(ctx, owner, spec)
}

// newToken is a sandbox's access token: 256 random bits.
func newToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// add registers sb and starts its timer; false once the Server closed.
func (s *Server) add(sb *sandbox, timeout time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.sandboxes[sb.id] = sb
	sb.timer = time.AfterFunc(timeout, func() { s.expire(sb) })
	return true
}

// expire kills sb when its timeout has passed (a setTimeout in between
// moved it: then the timer was reset and this is a stale fire).
func (s *Server) expire(sb *sandbox) {
	sb.mu.Lock()
	due := !s.cfg.Now().Before(sb.end)
	sb.mu.Unlock()
	if due {
		s.log.Info("e2b sandbox timed out", "sandbox", sb.id)
		s.kill(sb)
	}
}

// sandbox returns the running sandbox id, or nil. A sandbox whose default
// session is gone (its kernel died and it was deleted through /v1) is
// killed now.
func (s *Server) sandbox(id string) *sandbox {
	s.mu.Lock()
	sb := s.sandboxes[id]
	s.mu.Unlock()
	if sb == nil {
		return nil
	}
	if _, err := s.cfg.Sessions.Get(sb.owner, sb.id); err != nil {
		s.kill(sb)
		return nil
	}
	return sb
}

// owned is owner's running sandbox named by the path's {id}, or a 404.
func (s *Server) owned(r *http.Request) (*sandbox, error) {
	id := r.PathValue("id")
	sb := s.sandbox(id)
	if sb == nil || sb.owner != ownerFrom(r.Context()) {
		return nil, fmt.Errorf("%w: sandbox %s not found", errdefs.ErrNotFound, run.Quote(id, run.MaxName))
	}
	return sb, nil
}

// kill removes sb and closes its sessions; false when it was gone already.
func (s *Server) kill(sb *sandbox) bool {
	s.mu.Lock()
	if s.sandboxes[sb.id] != sb {
		s.mu.Unlock()
		return false
	}
	delete(s.sandboxes, sb.id)
	s.mu.Unlock()
	sb.stopTimer()
	sb.mu.Lock()
	ctxs := sb.contexts
	sb.contexts = nil
	sb.mu.Unlock()
	for _, c := range ctxs {
		if err := s.cfg.Sessions.Delete(sb.owner, c.session); err != nil && !errors.Is(err, session.ErrNotFound) {
			s.log.Error("e2b: close a context's session", "sandbox", sb.id, "context", c.ID, "err", err)
		}
	}
	return true
}

func (sb *sandbox) stopTimer() {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.timer != nil {
		sb.timer.Stop()
	}
}

func (s *Server) handleKill(w http.ResponseWriter, r *http.Request) {
	sb, err := s.owned(r)
	if err != nil {
		writeError(w, err)
		return
	}
	if !s.kill(sb) {
		writeError(w, fmt.Errorf("%w: sandbox %s not found", errdefs.ErrNotFound, run.Quote(sb.id, run.MaxName)))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// listedSandbox is one entry of GET /sandboxes, and GET /sandboxes/{id}.
type listedSandbox struct {
	SandboxID   string            `json:"sandboxID"`
	TemplateID  string            `json:"templateID"`
	ClientID    string            `json:"clientID"`
	StartedAt   time.Time         `json:"startedAt"`
	EndAt       time.Time         `json:"endAt"`
	CPUCount    int               `json:"cpuCount"`
	MemoryMB    int64             `json:"memoryMB"`
	DiskSizeMB  int64             `json:"diskSizeMB"`
	EnvdVersion string            `json:"envdVersion"`
	Metadata    map[string]string `json:"metadata"`
	State       string            `json:"state"`
}

func (s *Server) listed(sb *sandbox) listedSandbox {
	sb.mu.Lock()
	end := sb.end
	sb.mu.Unlock()
	l := listedSandbox{
		SandboxID: sb.id, TemplateID: sb.template, ClientID: "sandboxd", StartedAt: sb.started, EndAt: end,
		EnvdVersion: envdVersion, Metadata: sb.metadata, State: "running",
	}
	if sess, err := s.cfg.Sessions.Get(sb.owner, sb.id); err == nil {
		lim := sess.Info().Limits
		l.CPUCount = max(1, int(lim.CPUs))
		l.MemoryMB = int64(lim.Memory) >> 20
		l.DiskSizeMB = int64(lim.Tmpfs) >> 20
	}
	if l.Metadata == nil {
		l.Metadata = map[string]string{}
	}
	return l
}

// handleList lists the caller's sandboxes, oldest first. E2B's filters
// (metadata, state) are applied; everything here is running.
func (s *Server) handleList(w http.ResponseWriter, r *http.Request) {
	owner := ownerFrom(r.Context())
	s.mu.Lock()
	var mine []*sandbox
	for _, sb := range s.sandboxes {
		if sb.owner == owner {
			mine = append(mine, sb)
		}
	}
	s.mu.Unlock()
	out := []listedSandbox{}
	for _, sb := range mine {
		if s.sandbox(sb.id) != nil {
			out = append(out, s.listed(sb))
		}
	}
	slices.SortFunc(out, func(a, b listedSandbox) int { return a.StartedAt.Compare(b.StartedAt) })
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleInfo(w http.ResponseWriter, r *http.Request) {
	sb, err := s.owned(r)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, s.listed(sb))
}

// timeoutRequest is POST /sandboxes/{id}/timeout and the connect body;
// Duration is the refresh of older SDKs.
type timeoutRequest struct {
	Timeout  *int64 `json:"timeout"`
	Duration *int64 `json:"duration"`
}

// setTimeout moves sb's end to now + d and touches its sessions, whose
// idle clocks must not end them first.
func (s *Server) setTimeout(sb *sandbox, d time.Duration) {
	sb.mu.Lock()
	sb.end = s.cfg.Now().Add(d)
	if sb.timer != nil {
		sb.timer.Reset(d)
	}
	ctxs := sb.contexts
	sb.mu.Unlock()
	for _, c := range ctxs {
		if sess, err := s.cfg.Sessions.Get(sb.owner, c.session); err == nil {
			sess.Touch()
		}
	}
}

// handleTimeout sets a sandbox's timeout (POST .../timeout), or starts
// it again (POST .../refreshes, the keep-alive of older SDKs, whose
// duration may be left out for the default).
func (s *Server) handleTimeout(w http.ResponseWriter, r *http.Request) {
	sb, err := s.owned(r)
	if err != nil {
		writeError(w, err)
		return
	}
	var req timeoutRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		writeError(w, fmt.Errorf("%w: the request body: %w", errdefs.ErrInvalidArgument, err))
		return
	}
	sec := req.Timeout
	if strings.HasSuffix(r.URL.Path, "/refreshes") {
		sec = req.Duration
	} else if sec == nil {
		writeError(w, fmt.Errorf("%w: want {\"timeout\": seconds}", errdefs.ErrInvalidArgument))
		return
	}
	d, err := timeoutOf(sec, s.cfg.MaxTimeout)
	if err != nil {
		writeError(w, err)
		return
	}
	s.setTimeout(sb, d)
	w.WriteHeader(http.StatusNoContent)
}

// handleConnect hands a running sandbox to its owner again, with its
// access token; a timeout given moves its end. There is nothing to
// resume: sandboxes are never paused.
func (s *Server) handleConnect(w http.ResponseWriter, r *http.Request) {
	sb, err := s.owned(r)
	if err != nil {
		writeError(w, err)
		return
	}
	var req timeoutRequest
	_ = json.NewDecoder(r.Body).Decode(&req)
	if req.Timeout != nil {
		d, err := timeoutOf(req.Timeout, s.cfg.MaxTimeout)
		if err != nil {
			writeError(w, err)
			return
		}
		s.setTimeout(sb, d)
	}
	writeJSON(w, http.StatusOK, s.body(sb))
}

// handleNotOffered answers the rest of E2B's API (templates, pause,
// snapshots, volumes, secrets, metrics) with what sandboxd offers instead.
func (s *Server) handleNotOffered(w http.ResponseWriter, r *http.Request) {
	writeError(w, fmt.Errorf("%w: %s %s is not part of sandboxd's E2B API, which offers sandboxes (create, list, kill, timeout, connect), code, files and commands; custom templates, pause and resume, snapshots, volumes, secrets and metrics are not offered", errNotOffered, r.Method, run.Quote(r.URL.Path, run.MaxName)))
}
