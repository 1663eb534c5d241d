package jupyter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/sandboxd/sandboxd/internal/errdefs"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/runtimes"
	"github.com/sandboxd/sandboxd/internal/session"
)

// Config configures a Gateway. Zero fields take the defaults noted.
type Config struct {
	// Sessions runs the kernels: each kernel is one session of its
	// owner. Required.
	Sessions *session.Manager
	// Exec runs a cell of a session (default: the session's Exec). The
	// daemon passes the API's, which logs and counts every cell.
	Exec func(ctx context.Context, sess *session.Session, req run.CellRequest, live run.CellStream) (*run.CellResult, error)
	// Runtimes says which kernelspecs are installed (default
	// runtimes.Default()).
	Runtimes *runtimes.Registry
	// Owner is whose kernels a request may see (api.Owner: its token's).
	// Required: the routes are mounted behind the API's authentication.
	Owner func(*http.Request) string
	// Version is the implementation_version in kernel_info_reply.
	Version string
	// WriteTimeout bounds each WebSocket message sent: a client that stops
	// reading for this long is disconnected (default 30s).
	WriteTimeout time.Duration
	// MaxMessage bounds a message a client sends (default 16 MiB, a cell
	// as large as the session API takes).
	MaxMessage int64
	// MaxReading bounds the bytes of messages being read at once across
	// every connection (default 4 MaxMessage; never less than MaxMessage):
	// see readBudget.
	MaxReading int64
	// KeepAlive is how often an open WebSocket is pinged, and its kernel's
	// session kept from expiring while a client is connected (default 30s).
	KeepAlive time.Duration
	Logger    *slog.Logger
	// Now is the clock (tests inject one).
	Now func() time.Time
}

// Gateway serves the kernel gateway API. Its kernels live until they are
// shut down, their session expires (no client connected for the
// session's idle timeout) or Close.
type Gateway struct {
	cfg  Config
	log  *slog.Logger
	life context.Context
	stop context.CancelFunc
	// wg counts the kernels' workers and the open WebSockets.
	wg sync.WaitGroup
	// reading bounds the client messages being read at once.
	reading *readBudget

	mu      sync.Mutex
	kernels map[string]*kernel // by id
	closed  bool
}

// New returns a Gateway; ctx bounds its kernels' cells.
func New(ctx context.Context, cfg Config) *Gateway {
	if cfg.Runtimes == nil {
		cfg.Runtimes = runtimes.Default()
	}
	if cfg.Exec == nil {
		cfg.Exec = func(ctx context.Context, sess *session.Session, req run.CellRequest, live run.CellStream) (*run.CellResult, error) {
			return sess.Exec(ctx, req, live)
		}
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = 30 * time.Second
	}
	if cfg.MaxMessage == 0 {
		cfg.MaxMessage = 16 << 20
	}
	if cfg.MaxReading == 0 {
		cfg.MaxReading = 4 * cfg.MaxMessage
	}
	// One message of the largest size always fits.
	cfg.MaxReading = max(cfg.MaxReading, cfg.MaxMessage+readChunk)
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	g := &Gateway{cfg: cfg, log: cfg.Logger, kernels: map[string]*kernel{}, reading: &readBudget{size: cfg.MaxReading}}
	g.life, g.stop = context.WithCancel(ctx)
	return g
}

// Route is one endpoint of the gateway, to be mounted behind the API's
// authentication and browser checks.
type Route struct {
	Pattern string
	Handler http.Handler
}

// Routes are the gateway's endpoints, at the paths Jupyter's clients use.
func (g *Gateway) Routes() []Route {
	return []Route{
		{"GET /api/kernelspecs", http.HandlerFunc(g.handleSpecs)},
		{"GET /api/kernelspecs/{name}", http.HandlerFunc(g.handleSpec)},
		{"GET /api/kernels", http.HandlerFunc(g.handleList)},
		{"POST /api/kernels", http.HandlerFunc(g.handleStart)},
		{"GET /api/kernels/{id}", http.HandlerFunc(g.handleGet)},
		{"DELETE /api/kernels/{id}", http.HandlerFunc(g.handleShutdown)},
		{"POST /api/kernels/{id}/interrupt", http.HandlerFunc(g.handleInterrupt)},
		{"POST /api/kernels/{id}/restart", http.HandlerFunc(g.handleRestart)},
		{"GET /api/kernels/{id}/channels", http.HandlerFunc(g.handleChannels)},
	}
}

// Close shuts every kernel down (their sessions are deleted, which ends
// their cells) and closes every WebSocket with a close frame that says
// why, then waits for them. Starts after it fail.
func (g *Gateway) Close() {
	g.mu.Lock()
	g.closed = true
	all := g.kernels
	g.kernels = map[string]*kernel{}
	g.mu.Unlock()
	for _, k := range all {
		k.shutdown("the daemon is shutting down")
	}
	g.wg.Wait()
	g.stop()
}

// specModel is one entry of GET /api/kernelspecs.
type specModel struct {
	Name      string            `json:"name"`
	Spec      specBody          `json:"spec"`
	Resources map[string]string `json:"resources"`
}

type specBody struct {
	Argv          []string          `json:"argv"`
	DisplayName   string            `json:"display_name"`
	Language      string            `json:"language"`
	InterruptMode string            `json:"interrupt_mode"`
	Env           map[string]string `json:"env"`
	Metadata      map[string]any    `json:"metadata"`
}

// installed are the specs whose runtime this host has.
func (g *Gateway) installed() []*spec {
	var out []*spec
	for i := range specs {
		rt, err := g.cfg.Runtimes.Lookup(specs[i].runtime)
		if err == nil && rt.Kernel != nil && g.cfg.Runtimes.Available(rt) {
			out = append(out, &specs[i])
		}
	}
	return out
}

func (s *spec) model() specModel {
	// argv is what a local kernel would run; a gateway's kernels are
	// started by the gateway, so there is none. interrupt_mode "signal"
	// makes clients interrupt through the REST endpoint.
	return specModel{Name: s.name, Resources: map[string]string{}, Spec: specBody{
		Argv: []string{}, DisplayName: s.display, Language: s.info.Name, InterruptMode: "signal",
		Env: map[string]string{}, Metadata: map[string]any{"sandboxd": map[string]string{"runtime": s.runtime}},
	}}
}

func (g *Gateway) handleSpecs(w http.ResponseWriter, _ *http.Request) {
	all := map[string]specModel{}
	def := ""
	for _, s := range g.installed() {
		if def == "" {
			def = s.name
		}
		all[s.name] = s.model()
	}
	writeJSON(w, http.StatusOK, map[string]any{"default": def, "kernelspecs": all})
}

func (g *Gateway) handleSpec(w http.ResponseWriter, r *http.Request) {
	for _, s := range g.installed() {
		if s.name == r.PathValue("name") {
			writeJSON(w, http.StatusOK, s.model())
			return
		}
	}
	writeError(w, fmt.Errorf("%w: no kernelspec %s", errdefs.ErrNotFound, run.Quote(r.PathValue("name"), run.MaxName)))
}

// kernelModel is a kernel as the REST API shows it.
type kernelModel struct {
	ID             string `json:"id"`
	Name           string `json:"name"`
	LastActivity   string `json:"last_activity"`
	ExecutionState string `json:"execution_state"`
	Connections    int    `json:"connections"`
}

func (g *Gateway) handleList(w http.ResponseWriter, r *http.Request) {
	owner := g.cfg.Owner(r)
	g.mu.Lock()
	var mine []*kernel
	for _, k := range g.kernels {
		if k.owner == owner {
			mine = append(mine, k)
		}
	}
	g.mu.Unlock()
	sort.Slice(mine, func(i, j int) bool { return mine[i].started.Before(mine[j].started) })
	out := []kernelModel{}
	for _, k := range mine {
		if k.expired() {
			g.remove(k, "its session expired")
			continue
		}
		out = append(out, k.model())
	}
	writeJSON(w, http.StatusOK, out)
}

// startRequest is POST /api/kernels' body. Jupyter's clients send more
// (path, env for the kernel's launcher); what a gateway of sandboxes has
// no use for is ignored, as Jupyter's own servers do.
type startRequest struct {
	Name string `json:"name"`
}

func (g *Gateway) handleStart(w http.ResponseWriter, r *http.Request) {
	var req startRequest
	if r.ContentLength != 0 {
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			writeError(w, fmt.Errorf("%w: the body is not a kernel request ({\"name\": \"python3\"}): %w", errdefs.ErrInvalidArgument, err))
			return
		}
	}
	k, err := g.start(r.Context(), g.cfg.Owner(r), req.Name)
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Location", "/api/kernels/"+k.id)
	writeJSON(w, http.StatusCreated, k.model())
}

// start starts a kernel of spec name for owner: a session, with the
// spec's prelude run in it.
func (g *Gateway) start(ctx context.Context, owner, name string) (*kernel, error) {
	s, ok := lookupSpec(name)
	if ok {
		ok = false
		for _, in := range g.installed() {
			ok = ok || in == s
		}
	}
	if !ok {
		var names []string
		for _, s := range g.installed() {
			names = append(names, s.name)
		}
		return nil, fmt.Errorf("%w: no kernelspec %s here; the kernels are %v", errdefs.ErrNotFound, run.Quote(name, run.MaxName), names)
	}
	g.sweep()
	k := newKernel(g, newUUID(), owner, s)
	if err := k.boot(ctx); err != nil {
		return nil, err
	}
	g.mu.Lock()
	closed := g.closed
	if !closed {
		g.kernels[k.id] = k
		g.wg.Add(1)
	}
	g.mu.Unlock()
	if closed {
		k.shutdown("the daemon is shutting down")
		return nil, fmt.Errorf("%w: the daemon is shutting down", errdefs.ErrUnavailable)
	}
	go k.work()
	g.log.Info("kernel started", "kernel", k.id, "spec", s.name, "session", k.sessionID())
	return k, nil
}

// sweep removes the kernels whose session is gone. Each start sweeps, so
// the kernels held are the live sessions' and those expired since the
// last start: a client that deletes its kernels' sessions through the
// session API and starts more cannot pile up kernels (and their workers)
// that no quota counts.
func (g *Gateway) sweep() {
	g.mu.Lock()
	all := make([]*kernel, 0, len(g.kernels))
	for _, k := range g.kernels {
		all = append(all, k)
	}
	g.mu.Unlock()
	for _, k := range all {
		if k.expired() {
			g.remove(k, "its session expired")
		}
	}
}

// lookup returns the caller's kernel named by the path's {id}, or answers
// 404 and returns nil. Another owner's kernel is not found, as a missing
// one is; so is one whose session expired.
func (g *Gateway) lookup(w http.ResponseWriter, r *http.Request) *kernel {
	id := r.PathValue("id")
	g.mu.Lock()
	k := g.kernels[id]
	g.mu.Unlock()
	if k != nil && k.owner == g.cfg.Owner(r) {
		if !k.expired() {
			return k
		}
		g.remove(k, "its session expired")
	}
	writeError(w, fmt.Errorf("%w: no kernel %s (it may have been shut down, or expired)", errdefs.ErrNotFound, run.Quote(id, run.MaxName)))
	return nil
}

// remove forgets k and shuts it down.
func (g *Gateway) remove(k *kernel, why string) {
	g.mu.Lock()
	mine := g.kernels[k.id] == k
	if mine {
		delete(g.kernels, k.id)
	}
	g.mu.Unlock()
	if mine {
		k.shutdown(why)
		g.log.Info("kernel shut down", "kernel", k.id, "why", why)
	}
}

func (g *Gateway) handleGet(w http.ResponseWriter, r *http.Request) {
	if k := g.lookup(w, r); k != nil {
		writeJSON(w, http.StatusOK, k.model())
	}
}

func (g *Gateway) handleShutdown(w http.ResponseWriter, r *http.Request) {
	if k := g.lookup(w, r); k != nil {
		g.remove(k, "shut down by its client")
		w.WriteHeader(http.StatusNoContent)
	}
}

func (g *Gateway) handleInterrupt(w http.ResponseWriter, r *http.Request) {
	if k := g.lookup(w, r); k != nil {
		k.interrupt()
		w.WriteHeader(http.StatusNoContent)
	}
}

func (g *Gateway) handleRestart(w http.ResponseWriter, r *http.Request) {
	k := g.lookup(w, r)
	if k == nil {
		return
	}
	if err := k.restart(r.Context()); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, k.model())
}

// errorBody is Jupyter's error body: services and jupyter_server's
// gateway client show message (and reason) to the user.
type errorBody struct {
	Message string `json:"message"`
	Reason  string `json:"reason"`
}

func writeError(w http.ResponseWriter, err error) {
	class := errdefs.ClassOf(err)
	status := errdefs.HTTPStatus(class)
	if status == http.StatusTooManyRequests && !errors.Is(err, session.ErrTooMany) {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, errorBody{Message: err.Error(), Reason: class.Code()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
