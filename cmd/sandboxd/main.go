// Command sandboxd is the sandbox daemon: an HTTP/JSON API (runs, Piston v2
// compatible endpoints, sessions, MCP at /mcp) over the same executor as
// sandboxctl, and the MCP tools on stdin/stdout.
//
//	sandboxd serve --listen 127.0.0.1:8080 --token-file /etc/sandboxd/token
//	sandboxd mcp
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/sandboxd/sandboxd/internal/daemon"
	"github.com/sandboxd/sandboxd/internal/isolate"
	"github.com/sandboxd/sandboxd/internal/isolate/nsinit"
	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/mcpserver"
	"github.com/sandboxd/sandboxd/internal/session"
	"github.com/sandboxd/sandboxd/internal/wasm"
)

func main() {
	// The sandbox's init stage is this same binary, re-executed.
	nsinit.MaybeRun()
	// And so is the wasm backend's worker.
	wasm.MaybeRun()
	// What this daemon inherited is none of its children's business.
	isolate.NoInheritedFiles()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := rootCommand().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "sandboxd:", err)
		os.Exit(1)
	}
}

func rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "sandboxd",
		Short: "The sandbox daemon",
		Long: `The sandbox daemon: it runs untrusted code in sandboxes for clients over
HTTP (sandboxd serve) and for AI agents over the Model Context Protocol
(sandboxd mcp on stdin/stdout, or /mcp of sandboxd serve).

MCP tools:
` + mcpToolsHelp(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(serveCommand(), mcpCommand())
	return root
}

// mcpToolsHelp lists the MCP server's tools, one a line, from the
// server's own list.
func mcpToolsHelp() string {
	tools := mcpserver.Tools()
	width := 0
	for _, t := range tools {
		width = max(width, len(t.Name))
	}
	var b strings.Builder
	for _, t := range tools {
		fmt.Fprintf(&b, "  %-*s  %s\n", width, t.Name, t.Summary)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

// limitFlags are the server's ceilings and defaults, shared by serve and mcp.
type limitFlags struct {
	ceiling, defaults limits.Limits
	stateDir          string
	cgroupParent      string
	memoryBudget      limits.Bytes
}

func (f *limitFlags) add(fl *pflag.FlagSet) {
	fl.StringVar(&f.stateDir, "state-dir", "/run/sandboxd", "`DIR` for run state")
	fl.StringVar(&f.cgroupParent, "cgroup-parent", "sandboxd", "the cgroup `NAME` every sandbox's cgroup is made under; its memory is limited to --memory-budget (one per daemon)")
	fl.Var(&f.memoryBudget, "memory-budget", "memory the daemon may promise to runs and sessions together, as the sum of their memory limits; past it requests get 429. More than the host has overcommits it")
	showDefault(fl, "memory-budget", "the host's memory, capped by the daemon's cgroup, less an eighth of it or 1GiB, whichever is less")
	// The fields stay zero unless given; apply merges them with these.
	c, d := limits.DefaultCeiling(), limits.Defaults()
	fl.Var(&f.ceiling.Timeout, "max-timeout", "ceiling on a run's wall-clock limit")
	showDefault(fl, "max-timeout", c.Timeout.String())
	fl.Var(&f.ceiling.CPUTime, "max-cpu-time", "ceiling on a run's CPU time")
	showDefault(fl, "max-cpu-time", c.CPUTime.String())
	fl.Var(&f.ceiling.Memory, "max-memory", "ceiling on a run's memory")
	showDefault(fl, "max-memory", c.Memory.String())
	fl.IntVar(&f.ceiling.Pids, "max-pids", 0, "ceiling on a run's processes")
	showDefault(fl, "max-pids", strconv.Itoa(c.Pids))
	fl.Var(&f.ceiling.Output, "max-output", "ceiling on a run's output per stream")
	showDefault(fl, "max-output", c.Output.String())
	fl.Var(&f.ceiling.Tmpfs, "max-tmpfs", "ceiling on a run's workspace and /tmp")
	showDefault(fl, "max-tmpfs", c.Tmpfs.String())
	fl.Var(&f.defaults.Timeout, "default-timeout", "wall-clock limit of runs that set none")
	showDefault(fl, "default-timeout", d.Timeout.String())
	fl.Var(&f.defaults.Memory, "default-memory", "memory limit of runs that set none")
	showDefault(fl, "default-memory", d.Memory.String())
}

// showDefault sets the default the help prints for flag name, once: def,
// the value that applies when the flag is not given, where the flag's
// variable holds zero for "not set". An empty def prints none.
func showDefault(fl *pflag.FlagSet, name, def string) { fl.Lookup(name).DefValue = def }

// apply fills the daemon's executor options.
func (f *limitFlags) apply(cfg *daemon.Config) error {
	cfg.Executor.Isolate.StateDir = f.stateDir
	if err := isolate.CheckCgroupParent(f.cgroupParent); err != nil {
		return fmt.Errorf("--cgroup-parent: %w", err)
	}
	cfg.Executor.Isolate.CgroupParent = f.cgroupParent
	// The daemon lives long and its memory grows with its sessions: its
	// sandboxes are cloned by a small spawner, not copied from it.
	cfg.Executor.Isolate.Spawner = true
	cfg.MemoryBudget = f.memoryBudget
	cfg.Executor.Ceiling = f.ceiling.Merge(limits.DefaultCeiling())
	cfg.Executor.Defaults = f.defaults.Merge(limits.Defaults())
	if err := cfg.Executor.Defaults.Validate(cfg.Executor.Ceiling); err != nil {
		return fmt.Errorf("default limits: %w", err)
	}
	cfg.Executor.Versions = true
	cfg.Version = version
	return nil
}

func mcpCommand() *cobra.Command {
	var (
		cfg daemon.Config
		lf  limitFlags
	)
	cmd := &cobra.Command{
		Use:   "mcp",
		Short: "Serve the MCP tools on stdin/stdout, for an agent host",
		Long: `Serve the Model Context Protocol on stdin/stdout, for an agent host that
starts sandboxd as a local MCP server. Logs go to stderr. sandboxd serve
offers the same tools over HTTP at /mcp.

Tools:
` + mcpToolsHelp(),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			h, err := daemon.LogHandler(os.Stderr, "text", slog.LevelWarn)
			if err != nil {
				return err
			}
			cfg.Logger = slog.New(h)
			if err := lf.apply(&cfg); err != nil {
				return err
			}
			return daemon.ServeMCP(cmd.Context(), cfg)
		},
	}
	lf.add(cmd.Flags())
	sessionFlags(cmd.Flags(), &cfg.Sessions)
	cmd.Flags().IntVar(&cfg.Concurrency, "max-concurrent", runtime.NumCPU(), "runs at once")
	return cmd
}

func serveCommand() *cobra.Command {
	var (
		cfg       daemon.Config
		tokenFile string
		logFormat string
		lf        limitFlags
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the HTTP API: runs, Piston, sessions, MCP at /mcp, metrics",
		Long: `Serve the HTTP API:

  POST /v1/runs              run a program in a fresh sandbox (?stream=1:
                             its output as NDJSON events while it runs)
  GET  /v1/runtimes          the languages, their versions and backends
  POST /api/v2/execute,      Piston v2 compatible: Piston's clients work
  GET  /api/v2/runtimes      unchanged
  /v1/sessions               stateful sessions: a live Python or JavaScript
                             interpreter whose variables and files persist
                             from cell to cell (.../exec, .../interrupt,
                             .../files/PATH)
  /mcp                       the MCP tools (see sandboxd mcp --help) over
                             streamable HTTP
  GET  /metrics              Prometheus metrics
  GET  /healthz, /readyz     liveness; readiness (fails when the queue is full)
  GET  /openapi.json         the OpenAPI 3 document

The token comes from --token-file (one per line; each token owns its own
sessions) or SANDBOXD_TOKEN; every endpoint but /healthz, /readyz and
/openapi.json then wants it as a bearer token. Without one, sandboxd only
listens on a loopback address unless --insecure-no-token says so. SIGTERM
stops new requests, lets running runs finish for --grace, then kills the
rest; with --drain it first fails readiness and refuses new sessions until
its sessions end (or --drain passes), serving everything else.

Several replicas behind one load balancer: each names its sessions with
--replica, and with --peer-url-template a replica forwards a request for
another's session to it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if t := os.Getenv("SANDBOXD_TOKEN"); t != "" {
				cfg.API.Tokens = []string{t}
			}
			if tokenFile != "" {
				b, err := os.ReadFile(tokenFile)
				if err != nil {
					return fmt.Errorf("token file: %w", err)
				}
				cfg.API.Tokens = parseTokens(string(b))
				if len(cfg.API.Tokens) == 0 {
					return fmt.Errorf("token file %s holds no token", tokenFile)
				}
			}
			h, err := daemon.LogHandler(os.Stderr, logFormat, slog.LevelInfo)
			if err != nil {
				return err
			}
			cfg.Logger = slog.New(h)
			if err := lf.apply(&cfg); err != nil {
				return err
			}
			return daemon.Serve(cmd.Context(), cfg)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&cfg.Listen, "listen", "127.0.0.1:8080", "`HOST:PORT` to listen on")
	fl.StringVar(&tokenFile, "token-file", "", "`FILE` holding the bearer tokens clients must send, one a line")
	fl.BoolVar(&cfg.AllowRemoteWithoutToken, "insecure-no-token", false, "allow a non-loopback --listen without a token")
	fl.IntVar(&cfg.Concurrency, "max-concurrent", runtime.NumCPU(), "runs at once")
	fl.IntVar(&cfg.Queue, "max-queue", 64, "runs waiting for a slot before requests get 429")
	fl.IntVar(&cfg.CellConcurrency, "max-concurrent-cells", 0, "session cells at once, across sessions (default: --max-concurrent)")
	fl.IntVar(&cfg.CellQueue, "max-queued-cells", 64, "session cells waiting for a slot before requests get 429")
	fl.Int64Var(&cfg.API.MaxBody, "max-body", 16<<20, "largest request body in bytes (413 past it)")
	fl.Int64Var(&cfg.API.MaxBodyMemory, "max-body-memory", 64<<20, "request body bytes read at once across all requests (429 past it; never less than --max-body)")
	fl.Float64Var(&cfg.API.RefusalRate, "refusal-rate", 4, "a client refused more than --refusal-burst times at once waits its turn, so that it is refused at most this often a second (negative: never)")
	fl.IntVar(&cfg.API.RefusalBurst, "refusal-burst", 32, "refusals (400, 401, 403, 413, 415, 422, 429) a client may have at once before its requests wait their turn")
	fl.StringVar(&cfg.SpoolDir, "spool-dir", "/var/tmp", "`DIR` where a run's output past 1 MiB waits for its answer to be read, in files that have no name; on disk, not a tmpfs such as /run or /tmp, which is memory (\"\": keep it in memory)")
	fl.DurationVar(&cfg.Grace, "grace", 10*time.Second, "how long running runs may finish after SIGTERM")
	fl.DurationVar(&cfg.Drain, "drain", 0, "after SIGTERM, how long to wait for sessions to end before --grace: readiness fails and new sessions get 503 meanwhile (0: no wait)")
	fl.StringVar(&cfg.PeerURLTemplate, "peer-url-template", "", "forward a request for another replica's session to this `URL`, {replica} replaced by the replica's name: http://{replica}.sandboxd-headless:8080")
	connFlags(fl, &cfg.Conns)
	fl.StringVar(&logFormat, "log-format", "json", "log `FORMAT`: json or text")
	fl.StringToIntVar(&cfg.Executor.Warm, "warm", nil, "keep at least N warm sandboxes ready for RUNTIME, as `RUNTIME=N`: python=2 (0 disables); more under demand, up to --warm-max")
	showDefault(fl, "warm", "")
	fl.IntVar(&cfg.Executor.WarmMax, "warm-max", 0, "the most warm sandboxes a pool keeps under demand")
	showDefault(fl, "warm-max", "4 times --warm's N, at least 8; warm sandboxes hold at most a quarter of --memory-budget")
	fl.IntVar(&cfg.Executor.WarmRefills, "warm-refills", runtime.NumCPU(), "warm sandboxes a pool starts at once (at the least CPU weight: they yield to runs)")
	fl.BoolVar(&cfg.Executor.WarmZygote, "warm-zygote", false, "fork each warm run's interpreter from one started ahead (a fork server) into its pooled sandbox, instead of starting one in every sandbox: the same sandbox, a fraction of the CPU per run")
	fl.DurationVar(&cfg.Executor.WarmIdle, "warm-idle", 30*time.Second, "how long a warm sandbox above what demand asks for waits before it is destroyed")
	sessionFlags(fl, &cfg.Sessions)
	fl.StringVar(&cfg.E2BDomain, "e2b-domain", "", "also serve E2B SDKs before 2.7.0, which name sandboxes by host: `DOMAIN` of <port>-<sandbox id>.DOMAIN (wildcard DNS and TLS in front)")
	lf.add(fl)
	return cmd
}

// parseTokens reads a token file: one token per line; blank lines and
// lines starting with # are skipped. Each token owns its own sessions.
func parseTokens(s string) []string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return out
}

// connFlags bound the HTTP connections (daemon.Conns; RATIONALE.md,
// "Connection hygiene").
func connFlags(fl *pflag.FlagSet, c *daemon.Conns) {
	fl.IntVar(&c.Max, "max-conns", 0, "HTTP connections open at once; more are closed as soon as accepted")
	showDefault(fl, "max-conns", "4096, or less to fit RLIMIT_NOFILE")
	fl.IntVar(&c.PerIP, "max-conns-per-ip", 256, "HTTP connections open at once from one client address (an IPv6 /64); -1: no cap, for a daemon behind a proxy")
	fl.DurationVar(&c.ReadHeaderTimeout, "read-header-timeout", 10*time.Second, "how long a client may take to send a request's headers")
	fl.DurationVar(&c.ReadTimeout, "read-timeout", 3*time.Minute, "how long a client may take to send a whole request, body included")
	fl.DurationVar(&c.WriteTimeout, "write-timeout", 30*time.Second, "how long each write of a response may wait on a client that does not read (each write, not the whole response: streamed runs go on)")
	fl.DurationVar(&c.IdleTimeout, "idle-timeout", 60*time.Second, "how long a keep-alive connection may wait for its next request")
}

// sessionFlags are the session manager's flags.
func sessionFlags(fl *pflag.FlagSet, c *session.Config) {
	fl.IntVar(&c.MaxSessions, "max-sessions", 16, "live sessions this daemon holds at most")
	fl.IntVar(&c.MaxPerOwner, "max-sessions-per-token", 8, "live sessions one token holds at most")
	fl.DurationVar(&c.IdleTimeout, "session-idle", 10*time.Minute, "a session's default idle timeout")
	fl.DurationVar(&c.MaxIdleTimeout, "session-max-idle", time.Hour, "the longest idle timeout a client may ask for")
	fl.DurationVar(&c.CPUBudget, "session-cpu", 10*time.Minute, "a session's default CPU budget for its whole life, background processes included")
	fl.DurationVar(&c.MaxCPUBudget, "session-max-cpu", time.Hour, "the largest CPU budget a client may ask for a session")
	fl.IntVar(&c.Ready, "session-ready", 2, "Python session kernels kept started ahead, each holding its memory limit in the budget (0 keeps none)")
	fl.StringVar(&c.Replica, "replica", "", "this daemon's `NAME` in session ids, for a router (default: the host name)")
}
