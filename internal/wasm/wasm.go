package wasm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/tetratelabs/wazero"

	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/workspace"
)

// DefaultRuntimesDir is where scripts/build-wasm-runtimes.sh installs the
// interpreters unless $SANDBOXD_WASM_DIR says otherwise.
const DefaultRuntimesDir = "/usr/local/lib/sandboxd/wasm"

// RuntimesDirEnv names the environment variable that overrides
// DefaultRuntimesDir, for the build script and for New alike.
const RuntimesDirEnv = "SANDBOXD_WASM_DIR"

// BuildCommand is the command that builds the interpreters; errors about a
// missing interpreter quote it.
const BuildCommand = "sudo scripts/build-wasm-runtimes.sh"

// Mode says where guests run. See RATIONALE.md, "The wasm backend", for
// the measurements behind the default.
type Mode string

const (
	// ModeAuto is ModeWorker on Linux in a binary whose main calls
	// MaybeRun, ModeInProcess otherwise.
	ModeAuto Mode = ""
	// ModeWorker runs each guest in a worker process (this binary
	// re-executed, see MaybeRun) under a runtime without
	// WithCloseOnContextDone: guests run at full speed and the runner
	// kills the worker at a limit, so any module stops at its deadline.
	ModeWorker Mode = "worker"
	// ModeInProcess runs guests on goroutines of this process under a
	// runtime made WithCloseOnContextDone: no extra processes and no
	// cooperation from main, but guest code is 2-5x slower, and a module
	// whose long computation passes no loop header (a deep call tree) is
	// not stopped at its deadline.
	ModeInProcess Mode = "in-process"
)

// Config configures a Runner. The zero value of each field picks a default.
type Config struct {
	// Mode says where guests run (default ModeAuto).
	Mode Mode
	// Workers caps the worker processes in ModeWorker (default twice the
	// number of CPUs, at least 4). A run waits for a free worker.
	Workers int
	// CacheDir holds wazero's compilation cache (default:
	// os.UserCacheDir()/sandboxd/wazero). With NoDiskCache the cache is in
	// memory only and CacheDir is ignored.
	CacheDir    string
	NoDiskCache bool
	// CacheMaxBytes bounds the disk cache (default DefaultCacheMaxBytes):
	// past it, the least recently written compiled modules are removed.
	CacheMaxBytes int64
	// RuntimesDir is where scripts/build-wasm-runtimes.sh installed python/
	// and quickjs/ (default $SANDBOXD_WASM_DIR, else DefaultRuntimesDir).
	RuntimesDir string
	// TempDir is where run workspaces are created (default /dev/shm when it
	// is a tmpfs with 1 GiB free, else os.TempDir()).
	TempDir string
	// Collect caps the produced files returned (defaults: 64 files, 8 MiB
	// each, 32 MiB in all, as the process backend).
	Collect workspace.CollectLimits
	// WorkerUID is the host uid (and gid) of the first worker in
	// ModeWorker; worker i of Workers runs as WorkerUID+i, so no two
	// workers can touch each other's files or processes. Default
	// DefaultWorkerUID when this process is root; a process that is not
	// root runs its workers as itself.
	WorkerUID int
	// CgroupParent is the cgroup (relative to the memory controller's
	// root) under which each worker gets a memory cgroup of its own
	// (default DefaultCgroupParent). A root process that cannot create it
	// fails New; one that is not root runs its workers without.
	CgroupParent string
	// ColdStarts starts every interpreter run cold, never from a snapshot
	// of its start-up (snapshot.go); for comparisons.
	ColdStarts bool
	Logger     *slog.Logger
}

// DefaultWorkerUID is the first host uid of the workers: below the
// process backend's (from 1000000), above every distribution's regular
// users.
const DefaultWorkerUID = 900000

// DefaultCgroupParent is the parent of the workers' cgroups.
const DefaultCgroupParent = "sandboxd-wasm"

// Exec is one run. Module names what to run; the rest mirrors
// isolate.Exec, plus the input files, since a wasm run's workspace lives
// only as long as the run.
type Exec struct {
	// Module is the path of a .wasm file (WASI preview1, a command with
	// _start), or the name of an interpreter built by
	// scripts/build-wasm-runtimes.sh: "python" or "quickjs".
	Module string
	// ModuleBytes, if set, is the module itself (a client's upload, such
	// as the entry file of `sandboxctl run prog.wasm`); Module is then
	// ignored. The runner stores it once, by content, under its own
	// directory, and compiles it once per content.
	ModuleBytes []byte
	// Argv is the guest's argv, argv[0] included; for the interpreters
	// argv[1] is the script, a path in the guest ("/workspace/main.py" or
	// relative to the cwd, /workspace).
	Argv []string
	// Env is the guest's whole environment (KEY=VALUE); nothing of the
	// host's is added.
	Env []string
	// Files are placed in a fresh workspace directory before the run; it
	// is the guest's cwd, mounted read-write at /workspace, and removed
	// after the run.
	Files []run.File
	// Stream is the guest's live I/O: Stdin is copied to its stdin (nil:
	// empty); Stdout and Stderr, if set, receive the output as it arrives
	// (up to the output cap). The result holds the output either way.
	run.Stream
	// Limits must be complete (merged with defaults and validated); see
	// Check for the ones this backend refuses.
	Limits limits.Limits
}

// Runner runs WASI modules under wazero, in worker processes or in this
// process (see Mode). It is safe for concurrent use; each run gets a fresh
// module instance and a fresh workspace.
type Runner struct {
	cfg  Config
	log  *slog.Logger
	mode Mode
	// rt compiles modules (and runs them in ModeInProcess); in ModeWorker
	// the compilation is a check and fills the disk cache for the workers.
	rt    wazero.Runtime
	cache wazero.CompilationCache
	exec  executor
	// confined: guests run in workers under seccomp and no_new_privs.
	confined bool
	// tmpCache is a cache directory of this runner's own, removed by Close.
	tmpCache string
	// uploads holds Exec.ModuleBytes as files named by their hash, made on
	// first use and removed by Close.
	uploadsOnce sync.Once
	uploads     string
	uploadsErr  error

	mu      sync.Mutex
	modules map[moduleKey]*moduleEntry
	closed  bool
	// runs counts the runs in progress; Close waits for them.
	runs sync.WaitGroup
	// compiles counts the compilations in progress, which outlive a run
	// that gave up waiting for one (its caller went); Close waits for
	// them too: wazero's runtime closed under a compilation panics.
	compiles sync.WaitGroup
}

// New prepares the wazero runtime: its compilation cache (on disk unless
// NoDiskCache) and WASI preview1, instantiated once for every run.
func New(ctx context.Context, cfg Config) (*Runner, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.RuntimesDir = RuntimesDir(cfg.RuntimesDir)
	if cfg.TempDir == "" {
		cfg.TempDir = defaultTempDir()
	}
	if cfg.Collect == (workspace.CollectLimits{}) {
		cfg.Collect = workspace.DefaultCollectLimits
	}
	if cfg.CacheMaxBytes <= 0 {
		cfg.CacheMaxBytes = DefaultCacheMaxBytes
	}
	if cfg.Workers <= 0 {
		cfg.Workers = max(4, 2*runtime.NumCPU())
	}
	if cfg.CacheDir == "" && !cfg.NoDiskCache {
		// Resolved here, not in newCache: the workers are given this
		// directory, and an empty one would put their cache in the cwd.
		base, err := os.UserCacheDir()
		if err != nil {
			return nil, fmt.Errorf("find the user cache directory (set Config.CacheDir): %w", err)
		}
		cfg.CacheDir = filepath.Join(base, "sandboxd", "wazero")
	}
	mode, err := pickMode(cfg.Mode)
	if err != nil {
		return nil, err
	}
	r := &Runner{cfg: cfg, log: cfg.Logger, mode: mode, modules: map[moduleKey]*moduleEntry{}}
	if mode == ModeWorker && cfg.NoDiskCache {
		// Workers load what the runner compiled from a disk cache: give
		// them a private one, removed by Close.
		dir, err := os.MkdirTemp(cfg.TempDir, "sandboxd-wazero-")
		if err != nil {
			return nil, fmt.Errorf("create the workers' compilation cache: %w", err)
		}
		r.cfg.CacheDir, r.cfg.NoDiskCache, r.tmpCache = dir, false, dir
	}
	if r.cache, err = newCache(r.cfg); err != nil {
		r.removeTmpCache()
		return nil, err
	}
	rcfg := wazero.NewRuntimeConfigCompiler().
		WithCompilationCache(r.cache).
		// The deadline in process: see RATIONALE.md, "The wasm backend".
		// The flag changes the machine code (and its cache key): workers
		// load code compiled without it.
		WithCloseOnContextDone(mode == ModeInProcess)
	r.rt = wazero.NewRuntimeWithConfig(ctx, rcfg)
	if err := instantiateWASI(ctx, r.rt); err != nil {
		_ = r.rt.Close(ctx)
		_ = r.cache.Close(ctx)
		r.removeTmpCache()
		return nil, err
	}
	if mode == ModeWorker {
		pool, err := newWorkerPool(r.poolConfig(), cfg.Logger)
		if err != nil {
			_ = r.rt.Close(ctx)
			_ = r.cache.Close(ctx)
			r.removeTmpCache()
			return nil, err
		}
		r.exec = pool
		r.confined = r.poolConfig().uid >= 0
	} else {
		r.exec = &inProcess{rt: r.rt}
	}
	r.log.Debug("wasm runner ready", "mode", mode, "runtimes", cfg.RuntimesDir, "cache", r.cfg.CacheDir)
	return r, nil
}

// poolConfig is how the workers are started: as unprivileged uids in
// memory cgroups when this process is root, as this process otherwise.
func (r *Runner) poolConfig() poolConfig {
	pc := poolConfig{cacheDir: r.cfg.CacheDir, max: r.cfg.Workers, uid: -1}
	if os.Geteuid() != 0 {
		return pc
	}
	pc.uid = r.cfg.WorkerUID
	if pc.uid <= 0 {
		pc.uid = DefaultWorkerUID
	}
	pc.cgroupParent = r.cfg.CgroupParent
	if pc.cgroupParent == "" {
		pc.cgroupParent = DefaultCgroupParent
	}
	return pc
}

// pickMode resolves ModeAuto and checks that the mode can work here.
func pickMode(m Mode) (Mode, error) {
	workers := runtime.GOOS == "linux" && maybeRunCalled.Load()
	switch m {
	case ModeAuto:
		if workers {
			return ModeWorker, nil
		}
		return ModeInProcess, nil
	case ModeWorker:
		if !workers {
			return "", fmt.Errorf("%w: ModeWorker needs Linux and wasm.MaybeRun() at the start of main", ErrInvalid)
		}
		return m, nil
	case ModeInProcess:
		return m, nil
	}
	return "", fmt.Errorf("%w: unknown mode %q", ErrInvalid, m)
}

// Mode is where this runner runs guests.
func (r *Runner) Mode() Mode { return r.mode }

func (r *Runner) removeTmpCache() {
	if r.tmpCache != "" {
		_ = os.RemoveAll(r.tmpCache)
	}
}

func newCache(cfg Config) (wazero.CompilationCache, error) {
	if cfg.NoDiskCache {
		return wazero.NewCompilationCache(), nil
	}
	dir := cfg.CacheDir
	if dir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return nil, fmt.Errorf("find the user cache directory (set Config.CacheDir): %w", err)
		}
		dir = filepath.Join(base, "sandboxd", "wazero")
	}
	// Readable by the workers, which are other uids; only this process
	// writes it.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create the compilation cache: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create the compilation cache: %w", err)
	}
	cache, err := wazero.NewCompilationCacheWithDir(dir)
	if err != nil {
		return nil, fmt.Errorf("open the compilation cache %s: %w", dir, err)
	}
	return cache, nil
}

// Close waits for the runs in progress, then releases the runtime and its
// compiled modules. The on-disk cache stays.
func (r *Runner) Close(ctx context.Context) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()
	r.runs.Wait()
	r.compiles.Wait()
	err := errors.Join(r.exec.close(ctx), r.rt.Close(ctx), r.cache.Close(ctx))
	r.removeTmpCache()
	r.mu.Lock()
	uploads := r.uploads
	r.mu.Unlock()
	if uploads != "" {
		err = errors.Join(err, os.RemoveAll(uploads))
	}
	return err
}

// RuntimesDir is where the Runner looks for the interpreters.
func (r *Runner) RuntimesDir() string { return r.cfg.RuntimesDir }

// CollectLimits are the runner's caps on produced files.
func (r *Runner) CollectLimits() workspace.CollectLimits { return r.cfg.Collect }

// begin registers a run, unless the runner is closed.
func (r *Runner) begin() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	r.runs.Add(1)
	return nil
}

func (r *Runner) isolation() run.Isolation {
	return run.Isolation{
		Backend: run.BackendWasm,
		// No syscall of the guest's reaches the host kernel: WASI calls are
		// Go functions of the worker, which a root runner confines with
		// no_new_privs and a seccomp allowlist (confine_linux.go).
		Seccomp:    r.confined,
		NoNewPrivs: r.confined,
		Rootfs:     "wasi-preopens",
		// WASI has no users; the host process's uid does the file I/O.
		UID:     -1,
		Network: "none",
	}
}

// TempDir is where the runner creates workspaces.
func (r *Runner) TempDir() string { return r.cfg.TempDir }
