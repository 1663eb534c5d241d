// Package daemon runs sandboxd's HTTP server: listening, the executor
// behind the API, and a graceful shutdown that lets running runs finish for
// a grace period and then kills what is left.
package daemon

import (
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
	"github.com/sandboxd/sandboxd/internal/executor"
	"github.com/sandboxd/sandboxd/internal/mcpserver"
	"github.com/sandboxd/sandboxd/internal/metrics"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/session"
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
	// Concurrency and Queue size the admission gate: runs at once, and
	// runs waiting for a slot before requests get 429 (defaults: 2, 64).
	Concurrency, Queue int
	Executor           executor.Options
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
	cfg.Executor.Logger = log
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
	sessions := newSessions(ctx, x, cfg.Sessions, log)
	defer func() {
		if err := sessions.Close(); err != nil {
			log.Error("close sessions", "err", err)
		}
	}()
	gate := newGate(cfg)
	// The listener counts its refusals in m, and m shows its open
	// connections: m is set before Serve below makes ln accept.
	var m *metrics.Metrics
	ln, err := conns.listen(cfg.Listen, func(reason string) { m.ConnRefused(reason) })
	if err != nil {
		return err
	}
	m = metrics.New(metrics.Sources{Running: gate.Running, Waiting: gate.Waiting, Sessions: sessions.Count, Pools: x.PoolStats, Conns: ln.Open})
	runner := frontRunner(x, gate, m, log)
	cfg.API.Logger = log
	cfg.API.Runtimes = x.Runtimes()
	cfg.API.Gate = gate
	cfg.API.Metrics = m
	cfg.API.Sessions = sessions
	// A token-less daemon on a loopback address serves loopback Host
	// names and the address it bound (DNS rebinding); on another address
	// the operator chose --insecure-no-token and something else guards it.
	cfg.API.Addr = ln.Addr().String()
	cfg.API.AllowAnyHost = cfg.AllowRemoteWithoutToken && !loopbackListen(cfg.Listen)
	srv := api.New(runner, cfg.API)
	// MCP over streamable HTTP, behind the same token and admission gate.
	tools := mcpserver.New(runner, x.Runtimes(), cfg.Version, sessions)
	srv.Handle("/mcp", mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return tools }, nil))
	// Requests (and so runs) live in runCtx: it outlives ctx by the grace
	// period, then its cancellation kills every run still going.
	runCtx, killRuns := context.WithCancel(context.WithoutCancel(ctx))
	defer killRuns()
	hs := &http.Server{
		Handler:     srv,
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
	if err := drain(sessions, cfg.Drain, served, log); err != nil {
		return err
	}
	log.Info("shutting down: no new requests; running runs may finish", "grace", cfg.Grace)
	graceCtx, cancel := context.WithTimeout(runCtx, cfg.Grace)
	defer cancel()
	if err := hs.Shutdown(graceCtx); err != nil {
		log.Warn("grace period over: killing the runs still going")
		killRuns()
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
	cfg.Executor.Logger = log
	x, err := executor.New(cfg.Executor)
	if err != nil {
		return err
	}
	defer x.Close()
	sessions := newSessions(ctx, x, cfg.Sessions, log)
	defer sessions.Close()
	runner := frontRunner(x, newGate(cfg), metrics.New(metrics.Sources{}), log)
	return mcpserver.New(runner, x.Runtimes(), cfg.Version, sessions).Run(ctx, &mcp.StdioTransport{})
}

// newSessions is the session manager on x's process backend. Sessions are
// closed by its Close at shutdown, not by ctx's end: SIGTERM ends ctx
// before the grace period.
// newGate is the admission gate of cfg's size.
func newGate(cfg Config) *admission.Gate {
	c, q := cfg.Concurrency, cfg.Queue
	if c == 0 {
		c = 2
	}
	if q == 0 {
		q = 64
	}
	return admission.New(c, q)
}

// frontRunner is the runner every front end takes: the executor, admitted
// through gate, counted in m and logged, each a decorator of the next.
func frontRunner(x *executor.Executor, gate *admission.Gate, m *metrics.Metrics, log *slog.Logger) run.Runner {
	return &metrics.Runner{Next: &admission.Runner{Gate: gate, Next: x}, Metrics: m, Log: log}
}

func newSessions(ctx context.Context, x *executor.Executor, cfg session.Config, log *slog.Logger) *session.Manager {
	cfg.Runner, cfg.RunnerErr = x.Process(), x.ProcessErr()
	cfg.Runtimes = x.Runtimes()
	cfg.Defaults, cfg.Ceiling = x.Limits()
	cfg.Logger = log
	cfg.Prime = true
	return session.NewManager(context.WithoutCancel(ctx), cfg)
}
