// Package daemon runs sandboxd's HTTP server: listening, the executor
// behind the API, and a graceful shutdown that lets running runs finish for
// a grace period and then kills what is left.
package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/sandboxd/sandboxd/internal/admission"
	"github.com/sandboxd/sandboxd/internal/api"
	"github.com/sandboxd/sandboxd/internal/e2b"
	"github.com/sandboxd/sandboxd/internal/executor"
	"github.com/sandboxd/sandboxd/internal/jupyter"
	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/mcpserver"
	"github.com/sandboxd/sandboxd/internal/metrics"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/session"
	"github.com/sandboxd/sandboxd/internal/spool"
)

// Config configures Serve.
type Config struct {
	// Listen is the address (default 127.0.0.1:8080).
	Listen string
	// AllowRemoteWithoutToken lets a non-loopback Listen go without a
	// token (API.Tokens); without it such a configuration is refused.
	AllowRemoteWithoutToken bool
	// Grace is how long running runs may go on after SIGTERM (default 10s).
	Grace time.Duration
	// Drain, if positive, is how long a SIGTERMed daemon waits for its
	// sessions to end (deleted or expired) before the grace period:
	// meanwhile it fails readiness, refuses new sessions (503) and
	// serves everything else, its sessions' cells included. Zero: no
	// wait; sessions end with the daemon.
	Drain time.Duration
	// PeerURLTemplate, if set, is where the other replicas are reached
	// ("http://{replica}.sandboxd-headless:8080"): a request for a
	// session of another replica is forwarded there (api.Forwarder).
	PeerURLTemplate string
	API             api.Config
	// SpoolDir, if set, is where a run's output past output.SpoolAt waits
	// for its answer to be written (api.Config.Spool): a directory on
	// disk, since a tmpfs (/run, often /tmp) holds it in memory.
	SpoolDir string
	// Concurrency and Queue size the admission gate: runs at once, and
	// runs waiting for a slot before requests get 429 (defaults: 2, 64).
	Concurrency, Queue int
	// CellConcurrency and CellQueue size the session cells' gate, which
	// is not the runs' (RATIONALE.md): cells running at once across the
	// sessions, and cells waiting for a slot before 429 (defaults:
	// Concurrency's, 64). A session's other cells wait for its turn, in
	// its own queue, before this one.
	CellConcurrency, CellQueue int
	// MemoryBudget is the memory the daemon may promise to its runs and
	// sessions together: each holds its memory limit from it while it
	// lives, and past it requests get 429. Zero is what the host and the
	// daemon's cgroup can give, less a reserve (resolveBudget); more than
	// that overcommits the host, on purpose.
	MemoryBudget limits.Bytes
	Executor     executor.Options
	// Sessions configures the session manager; its runner, runtimes and
	// limits are the executor's.
	Sessions session.Config
	Logger   *slog.Logger
	// Ready, if set, receives the listener's address once it accepts.
	Ready func(addr net.Addr)
	// Version is reported to MCP clients.
	Version string
	// Conns bounds the HTTP connections: caps and timeouts.
	Conns Conns
	// E2BDomain, if set, routes E2B sandbox host names
	// ("<port>-<id>.<E2BDomain>") to the E2B API, for SDKs before 2.7.0.
	E2BDomain string
}

// ErrInsecure: a non-loopback listen address without a token.
var ErrInsecure = errors.New("refusing to serve a non-loopback address without a token")

// Serve runs the daemon until ctx ends (SIGTERM), then shuts down
// gracefully. It returns nil after a clean shutdown.
func Serve(ctx context.Context, cfg Config) error {
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:8080"
	}
	if cfg.Grace == 0 {
		cfg.Grace = 10 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := checkListen(cfg); err != nil {
		return err
	}
	if cfg.SpoolDir != "" {
		sp, err := spool.New(cfg.SpoolDir)
		if err != nil {
			return fmt.Errorf("spool directory (--spool-dir): %w", err)
		}
		cfg.API.Spool = sp
	}
	if cfg.PeerURLTemplate != "" {
		f, err := api.NewForwarder(cfg.PeerURLTemplate, nil, log)
		if err != nil {
			return err
		}
		defer f.Close()
		cfg.API.Forward = f
	}
	nfd, known := nofile()
	conns, err := cfg.Conns.resolve(nfd, known, log)
	if err != nil {
		return err
	}
	// The listener and the budget count their refusals in m, and m shows
	// their figures: m is set before Serve below makes ln accept.
	var m *metrics.Metrics
	budget, err := newBudget(&cfg, log, func() { m.Rejected("memory_budget") })
	if err != nil {
		return err
	}
	cfg.Executor.Logger = log
	// Each warm sandbox holds its memory limit from the budget until a
	// run takes it; together they may hold a quarter of it.
	cfg.Executor.WarmReserve = budget.TryReserve
	cfg.Executor.WarmBudget = budget.Limit() / 4
	x, err := executor.New(cfg.Executor)
	if err != nil {
		return err
	}
	// Warm sandboxes live until SIGTERM; runs that took one are on their
	// own context by then.
	if err := x.StartPools(ctx); err != nil {
		return err
	}
	defer func() {
		if err := x.Close(); err != nil {
			log.Error("close warm pools", "err", err)
		}
	}()
	gate, cellGate := newGate(cfg), newCellGate(cfg)
	sessions := newSessions(ctx, x, cellGate, cfg.Sessions, budget, log)
	defer func() {
		if err := sessions.Close(); err != nil {
			log.Error("close sessions", "err", err)
		}
	}()
	ln, err := conns.listen(cfg.Listen, func(reason string) { m.ConnRefused(reason) })
	if err != nil {
		return err
	}
	m = metrics.New(metrics.Sources{Running: gate.Running, Waiting: gate.Waiting, Sessions: sessions.Count, Pools: x.PoolStats, Conns: ln.Open,
		CellsRunning: cellGate.Running, CellsWaiting: cellGate.Waiting, MemoryBudget: budget.Limit, MemoryPromised: budget.Promised})
	runner := frontRunner(x, gate, budget, m, log)
	cfg.API.Logger = log
	cfg.API.Runtimes = x.Runtimes()
	cfg.API.Gate = gate
	cfg.API.Metrics = m
	cfg.API.Sessions = sessions
	cfg.API.AnswerDone = newMemoryReturn().answerDone
	// A token-less daemon on a loopback address serves loopback Host
	// names and the address it bound (DNS rebinding); on another address
	// the operator chose --insecure-no-token and something else guards it.
	cfg.API.Addr = ln.Addr().String()
	cfg.API.AllowAnyHost = cfg.AllowRemoteWithoutToken && !loopbackListen(cfg.Listen)
	srv := api.New(runner, cfg.API)
	// MCP over streamable HTTP, behind the same token and admission gate.
	tools := mcpserver.New(runner, x.Runtimes(), cfg.Version, sessions)
	srv.Handle("/mcp", mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return tools }, nil))
	// E2B's API over the same sessions, for E2B's SDKs (E2B_API_URL and
	// E2B_SANDBOX_URL at <daemon>/e2b); its keys are the daemon's tokens.
	e2bSrv := newE2B(cfg, x, sessions, m, log)
	defer e2bSrv.Close()
	srv.Mount("/e2b", e2bSrv)
	// Requests (and so runs) live in runCtx: it outlives ctx by the grace
	// period, then its cancellation kills every run still going.
	runCtx, killRuns := context.WithCancelCause(context.WithoutCancel(ctx))
	defer killRuns(nil)
	// The Jupyter kernel gateway, behind the same token and browser
	// checks; its cells end with runCtx as the API's runs do.
	gw := jupyter.New(runCtx, jupyter.Config{
		Sessions: sessions, Runtimes: x.Runtimes(), Owner: api.Owner, Exec: srv.Cell, Version: cfg.Version,
		WriteTimeout: conns.WriteTimeout, MaxMessage: cfg.API.MaxBody, MaxReading: cfg.API.MaxBodyMemory, Logger: log,
	})
	// Before the sessions close: it deletes its kernels' own. Shutdown
	// does not wait for WebSockets; this closes them.
	defer gw.Close()
	for _, r := range gw.Routes() {
		srv.Handle(r.Pattern, r.Handler)
	}
	hs := &http.Server{
		Handler:     e2bSrv.HostRouter("/e2b", srv),
		BaseContext: func(net.Listener) context.Context { return runCtx },
		ErrorLog:    slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	conns.server(hs)
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	log.Info("sandboxd listening", "addr", ln.Addr().String(), "auth", len(cfg.API.Tokens) > 0,
		"max_conns", conns.Max, "max_conns_per_ip", conns.PerIP)
	if cfg.Ready != nil {
		cfg.Ready(ln.Addr())
	}
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	// From here every answer closes its connection, and idle ones close
	// now: a client's next request opens a new connection, which a
	// Service sends to a replica that is not draining, rather than coming
	// back here on a keep-alive until the listener closes under it.
	hs.SetKeepAlivesEnabled(false)
	if err := drain(sessions, cfg.Drain, served, log); err != nil {
		return err
	}
	log.Info("shutting down: no new requests; running runs may finish", "grace", cfg.Grace)
	graceCtx, cancel := context.WithTimeout(runCtx, cfg.Grace)
	defer cancel()
	if err := hs.Shutdown(graceCtx); err != nil {
		log.Warn("grace period over: killing the runs still going")
		// The cause is the killed runs' reason (status canceled).
		killRuns(fmt.Errorf("the daemon shut down and its grace period of %s passed", cfg.Grace))
		// Handlers return promptly once their runs are killed.
		finalCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := hs.Shutdown(finalCtx); err != nil {
			_ = hs.Close()
			return fmt.Errorf("shutdown: %w", err)
		}
	}
	log.Info("sandboxd stopped")
	return nil
}

// drain waits, for at most d, for the sessions to end, while the server
// goes on serving: readiness fails and new sessions are refused
// (session.Manager.Drain), so a Service sends new work to other replicas
// while this one's sessions finish. It returns early if the server fails.
func drain(sessions *session.Manager, d time.Duration, served <-chan error, log *slog.Logger) error {
	if d <= 0 {
		return nil
	}
	done := sessions.Drain()
	log.Info("draining: readiness fails, new sessions are refused; waiting for the sessions to end", "sessions", sessions.Count(), "timeout", d)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		log.Info("drained: no session left")
	case <-t.C:
		log.Warn("drain timeout: closing the sessions left", "sessions", sessions.Count())
	case err := <-served:
		return err
	}
	return nil
}

func checkListen(cfg Config) error {
	if len(cfg.API.Tokens) > 0 || cfg.AllowRemoteWithoutToken {
		return nil
	}
	if _, _, err := net.SplitHostPort(cfg.Listen); err != nil {
		return fmt.Errorf("listen address %q: %w", cfg.Listen, err)
	}
	if loopbackListen(cfg.Listen) {
		return nil
	}
	return fmt.Errorf("%w: %s (give --token-file, or --insecure-no-token if something else guards it)", ErrInsecure, cfg.Listen)
}

// loopbackListen reports whether a listen address (host:port) is on the
// loopback: localhost or a loopback IP.
func loopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ServeMCP serves the MCP tools on stdin/stdout until the client goes away
// or ctx ends. Logs go to cfg.Logger (never stdout: it carries the
// protocol).
func ServeMCP(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := metrics.New(metrics.Sources{})
	budget, err := newBudget(&cfg, log, func() { m.Rejected("memory_budget") })
	if err != nil {
		return err
	}
	cfg.Executor.Logger = log
	x, err := executor.New(cfg.Executor)
	if err != nil {
		return err
	}
	defer x.Close()
	sessions := newSessions(ctx, x, newCellGate(cfg), cfg.Sessions, budget, log)
	defer sessions.Close()
	runner := frontRunner(x, newGate(cfg), budget, m, log)
	return mcpserver.New(runner, x.Runtimes(), cfg.Version, sessions).Run(ctx, &mcp.StdioTransport{})
}

// newGate is the runs' admission gate, of cfg's size.
func newGate(cfg Config) *admission.Gate {
	return admission.New(cmp.Or(cfg.Concurrency, 2), cmp.Or(cfg.Queue, 64))
}

// newCellGate is the session cells' admission gate, of cfg's size.
func newCellGate(cfg Config) *admission.Gate {
	return admission.New(cmp.Or(cfg.CellConcurrency, cfg.Concurrency, 2), cmp.Or(cfg.CellQueue, 64))
}

// newBudget is the daemon's memory budget (resolveBudget); onReject
// counts its refusals.
func newBudget(cfg *Config, log *slog.Logger, onReject func()) (*admission.Budget, error) {
	limit, err := resolveBudget(cfg, log)
	if err != nil {
		return nil, err
	}
	return admission.NewBudget(limit, onReject), nil
}

// frontRunner is the runner every front end takes: the executor, admitted
// through gate and budget, counted in m and logged, each a decorator of
// the next.
func frontRunner(x *executor.Executor, gate *admission.Gate, budget *admission.Budget, m *metrics.Metrics, log *slog.Logger) run.Runner {
	return &metrics.Runner{Next: &admission.Runner{Gate: gate, Budget: budget, Next: x}, Metrics: m, Log: log}
}

// newE2B is the E2B API over sessions: cells and commands may run up to
// the executor's timeout ceiling, sandboxes live up to the sessions'
// longest idle timeout.
func newE2B(cfg Config, x *executor.Executor, sessions *session.Manager, m *metrics.Metrics, log *slog.Logger) *e2b.Server {
	_, ceiling := x.Limits()
	return e2b.New(e2b.Config{
		Sessions: sessions, Tokens: cfg.API.Tokens, CellTimeout: ceiling.Timeout.Std(),
		MaxTimeout: cfg.Sessions.MaxIdleTimeout, Domain: cfg.E2BDomain, Metrics: m, Logger: log,
	})
}

// newSessions is the session manager on x's process backend: its cells
// are admitted through gate, and each session holds its memory limit from
// budget. Sessions are closed by its Close at shutdown, not by ctx's end:
// SIGTERM ends ctx before the grace period.
func newSessions(ctx context.Context, x *executor.Executor, gate *admission.Gate, cfg session.Config, budget *admission.Budget, log *slog.Logger) *session.Manager {
	cfg.Runner, cfg.RunnerErr = x.Process(), x.ProcessErr()
	cfg.Gate = gate
	cfg.Memory = budget
	cfg.Runtimes = x.Runtimes()
	cfg.Defaults, cfg.Ceiling = x.Limits()
	cfg.Logger = log
	cfg.Prime = true
	return session.NewManager(context.WithoutCancel(ctx), cfg)
}
