// Package executor turns a run.Spec into a run.Result: it checks the spec,
// resolves the runtime and the limits, picks a backend, prepares the
// workspace, compiles if the language needs it, runs, and collects the files
// the run produced. Every front end (CLI, HTTP, MCP) calls it.
package executor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sandboxd/sandboxd/internal/admission"
	"github.com/sandboxd/sandboxd/internal/isolate"
	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/pool"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/runtimes"
	"github.com/sandboxd/sandboxd/internal/wasm"
	"github.com/sandboxd/sandboxd/internal/workspace"
)

// Options configure an Executor. Zero fields take defaults.
type Options struct {
	Runtimes *runtimes.Registry
	// Defaults fill unset limits (default limits.Defaults()).
	Defaults limits.Limits
	// Ceiling caps what any spec may ask for (default
	// limits.DefaultCeiling()).
	Ceiling limits.Limits
	// CeilingOwner names who set Ceiling, in the error of a limit above
	// it (see limits.Limits.ValidateFor): empty for a server, or the
	// program that runs sandboxes itself ("sandboxctl").
	CeilingOwner string
	// Isolate configures the process backend.
	Isolate isolate.Config
	// Versions makes results carry the runtime's version (probed once per
	// runtime, then cached).
	Versions bool
	// Wasm configures the wasm backend (made on first use).
	Wasm wasm.Config
	// Warm gives the warm pools' minimum sizes by runtime name (only
	// "python" has a warm runner today); StartPools starts them.
	Warm map[string]int
	// WarmMax bounds each pool's size under demand (default: 4 times
	// its minimum, at least 8; never below the minimum).
	WarmMax int
	// WarmRefills is how many sandboxes each pool may start at once
	// (default 1).
	WarmRefills int
	// WarmIdle is how long a warm sandbox above its pool's target waits
	// before it is destroyed (default 30s).
	WarmIdle time.Duration
	// WarmZygote has each warm pool's runs forked by a fork server
	// (isolate.Zygote) into sandboxes started without an interpreter.
	WarmZygote bool
	// WarmReserve, if set, reserves each warm sandbox's memory limit (the
	// default one, which it starts with) until a run takes it: the
	// daemon's memory budget.
	WarmReserve func(limits.Bytes) (release func(), err error)
	// WarmBudget, if set, is the memory the warm pools may reserve
	// together: it bounds each pool's maximum to its share, at the
	// default memory limit per sandbox.
	WarmBudget limits.Bytes
	Logger     *slog.Logger
}

// Executor runs specs. It is safe for concurrent use.
type Executor struct {
	opts    Options
	process *isolate.Runner
	// zygotes are the warm pools' fork servers (Options.WarmZygote).
	zygotes []*isolate.Zygote
	// processErr says why the process backend is not available.
	processErr error
	log        *slog.Logger
	// pools are the warm pools by runtime name, once StartPools ran.
	pools map[string]*pool.Pool
	// cleanups tracks workspace removals done after a result is returned.
	cleanups sync.WaitGroup
	wasmMu   sync.Mutex
	wasm     *wasm.Runner
	// wasmCtx is the first wasm run's context, without its cancellation:
	// the wasm backend outlives that run and is closed with it.
	wasmCtx context.Context
}

// cleanup runs f after the caller has its result: removing a workspace
// (an unmount and a few rmdirs) is not the client's to wait for. Close
// waits for every cleanup; a crash leaves them to the next sweep.
func (x *Executor) cleanup(what string, id string, f func() error) {
	x.cleanups.Add(1)
	go func() {
		defer x.cleanups.Done()
		if err := f(); err != nil {
			x.log.Error(what, "run", id, "err", err)
		}
	}()
}

// New prepares the backends this host supports. It fails only when no
// backend can run at all, with the reason of each.
func New(opts Options) (*Executor, error) {
	if opts.Runtimes == nil {
		opts.Runtimes = runtimes.Default()
	}
	if opts.Defaults == (limits.Limits{}) {
		opts.Defaults = limits.Defaults()
	}
	if opts.Ceiling == (limits.Limits{}) {
		opts.Ceiling = limits.DefaultCeiling()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Isolate.Logger == nil {
		opts.Isolate.Logger = opts.Logger
	}
	x := &Executor{opts: opts, log: opts.Logger}
	// Without the process backend (no root, no namespaces) runs can still
	// go to the wasm backend; a run that needs the process backend gets
	// processErr.
	x.process, x.processErr = isolate.New(opts.Isolate)
	return x, nil
}

// StartPools starts the warm pools of Options.Warm; they live until ctx
// ends or Close. Runs take a warm sandbox when one is ready and fits, and
// start cold otherwise.
func (x *Executor) StartPools(ctx context.Context) error {
	x.pools = map[string]*pool.Pool{}
	if x.processErr != nil && len(x.opts.Warm) > 0 {
		return fmt.Errorf("warm pools need the process backend: %w", x.processErr)
	}
	pools := 0
	for _, size := range x.opts.Warm {
		if size > 0 {
			pools++
		}
	}
	for name, size := range x.opts.Warm {
		if size <= 0 {
			continue
		}
		rt, err := x.opts.Runtimes.Lookup(name)
		if err != nil {
			return err
		}
		if rt.Warm == nil {
			return fmt.Errorf("%w: no warm runner for runtime %q", ErrInvalid, rt.Name)
		}
		env, err := runtimes.BuildEnv(rt.Env, nil)
		if err != nil {
			return err
		}
		// The ceilings but for memory: a waiting sandbox holds the
		// default memory limit, which is what it reserves in the budget;
		// the run that takes it applies its own (and has reserved it).
		l := x.opts.Ceiling
		l.Tmpfs = x.opts.Defaults.Tmpfs
		l.Output = x.opts.Defaults.Output
		l.Memory = x.opts.Defaults.Memory
		var z *isolate.Zygote
		if x.opts.WarmZygote {
			if z, err = x.process.NewZygote(append([]string{rt.Binary}, rt.Warm.Flags...), rt.Warm.Source, env); err != nil {
				x.log.Warn("no fork server: the warm pool starts an interpreter in each sandbox", "runtime", rt.Name, "err", err)
			} else {
				x.zygotes = append(x.zygotes, z)
			}
		}
		x.pools[rt.Name] = pool.New(ctx, x.process, pool.Config{
			Min: size, Max: x.warmMax(size, pools), Refills: x.opts.WarmRefills, Idle: x.opts.WarmIdle,
			Reserve: x.opts.WarmReserve, Zygote: z,
			Argv: rt.Warm.Argv(rt), Files: []run.File{rt.Warm.File()}, Env: env, Limits: l, Logger: x.log,
		})
	}
	return nil
}

// warmMax is the largest size of a pool of minimum size min, one of
// pools: the operator's WarmMax, or 4 times the minimum and at least 8;
// at most the pool's share of WarmBudget; never below the minimum.
func (x *Executor) warmMax(min, pools int) int {
	m := x.opts.WarmMax
	if m <= 0 {
		m = max(4*min, 8)
	}
	if b, per := x.opts.WarmBudget, x.opts.Defaults.Memory; b > 0 && per > 0 && pools > 0 {
		if share := int(b / limits.Bytes(pools) / per); share < m {
			x.log.Info("the memory budget bounds the warm pool", "max", share, "asked", m, "warm_budget", b)
			m = share
		}
	}
	return max(m, min)
}

// PoolStats returns each warm pool's figures by runtime.
func (x *Executor) PoolStats() map[string]pool.Stats {
	out := map[string]pool.Stats{}
	for name, p := range x.pools {
		out[name] = p.Stats()
	}
	return out
}

// Close stops the warm pools, removes their sandboxes and waits for the
// removal of every finished run's workspace.
func (x *Executor) Close() error {
	var errs []error
	for _, p := range x.pools {
		errs = append(errs, p.Close())
	}
	for _, z := range x.zygotes {
		errs = append(errs, z.Close())
	}
	x.cleanups.Wait()
	x.wasmMu.Lock()
	if x.wasm != nil {
		errs = append(errs, x.wasm.Close(x.wasmCtx))
	}
	x.wasmMu.Unlock()
	return errors.Join(errs...)
}

// Runtimes is the registry the executor resolves runtimes in.
func (x *Executor) Runtimes() *runtimes.Registry { return x.opts.Runtimes }

// Limits are the defaults that fill a spec's unset limits and the
// ceiling no spec may pass.
func (x *Executor) Limits() (defaults, ceiling limits.Limits) {
	return x.opts.Defaults, x.opts.Ceiling
}

// ProcessErr says why the process backend is not available, or is nil.
func (x *Executor) ProcessErr() error { return x.processErr }

// Process is the process backend, for doctor and tests.
func (x *Executor) Process() *isolate.Runner { return x.process }

// plan is a checked spec, ready to run.
type plan struct {
	// rt is nil for a WASI module run as is.
	rt            *runtimes.Runtime
	backend       run.Backend
	entry         string
	limits        limits.Limits
	compileLimits limits.Limits
	env           []string
}

// Plan checks spec and resolves what it leaves open: the runtime, the
// backend, the complete limits and the environment. Its errors wrap
// ErrInvalid or ErrUnavailable (or runtimes.ErrUnknownRuntime,
// limits.ErrInvalid) and say what is wrong.
func (x *Executor) Plan(spec *run.Spec) (*run.Plan, error) {
	p, err := x.plan(spec)
	if err != nil {
		return nil, err
	}
	rp := &run.Plan{Spec: spec, Backend: p.backend, Limits: p.limits, Detail: p}
	if p.rt != nil {
		rp.Runtime = p.rt.Name
	}
	return rp, nil
}

func (x *Executor) plan(spec *run.Spec) (*plan, error) {
	if len(spec.Files) == 0 {
		return nil, fmt.Errorf("%w: no files: a run needs at least the file to run", ErrInvalid)
	}
	if err := workspace.CheckFiles(spec.Files); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	entry := spec.Entry
	if entry == "" {
		entry = spec.Files[0].Name
	}
	if !slices.ContainsFunc(spec.Files, func(f run.File) bool { return f.Name == entry }) {
		return nil, fmt.Errorf("%w: entry %s is not one of the files", ErrInvalid, run.Quote(entry, run.MaxName))
	}
	switch spec.Backend {
	case run.BackendAuto, run.BackendProcess, run.BackendWasm:
	default:
		return nil, fmt.Errorf("%w: unknown backend %s: use %q, %q or leave it empty (auto)", ErrInvalid, run.Quote(string(spec.Backend), run.MaxName), run.BackendProcess, run.BackendWasm)
	}
	for _, a := range spec.Args {
		if strings.ContainsRune(a, 0) {
			return nil, fmt.Errorf("%w: an argument contains a NUL byte", ErrInvalid)
		}
	}
	p := &plan{entry: entry}
	var err error
	switch {
	case spec.Runtime != "":
		p.rt, err = x.opts.Runtimes.Lookup(spec.Runtime)
	case isWasmModule(entry):
		// A WASI module runs as is, on the wasm backend.
		if spec.Backend == run.BackendProcess {
			return nil, fmt.Errorf("%w: %s is a WebAssembly module: it runs on the wasm backend", ErrInvalid, run.Quote(entry, run.MaxName))
		}
	default:
		p.rt, err = x.opts.Runtimes.ForFile(entry)
	}
	if err != nil {
		return nil, err
	}
	if p.backend, err = x.pickBackend(spec.Backend, p); err != nil {
		return nil, err
	}
	rt := p.rt
	if rt != nil && p.backend == run.BackendProcess && !x.opts.Runtimes.Available(rt) {
		return nil, fmt.Errorf("%w: runtime %q is not installed on this host (%s is missing)", ErrUnavailable, rt.Name, rt.Binary)
	}
	p.limits = spec.Limits.Merge(x.opts.Defaults)
	if err := p.limits.ValidateFor(x.opts.Ceiling, x.opts.CeilingOwner); err != nil {
		return nil, err
	}
	if rt != nil && rt.Compile != nil {
		p.compileLimits = spec.CompileLimits.Merge(x.opts.Defaults)
		if err := p.compileLimits.ValidateFor(x.opts.Ceiling, x.opts.CeilingOwner); err != nil {
			return nil, fmt.Errorf("compile limits: %w", err)
		}
		// The compiler writes the program into the run's workspace.
		p.compileLimits.Tmpfs = p.limits.Tmpfs
	}
	if rt != nil {
		p.env, err = rt.Environ(p.limits.CPUs, spec.Env)
	} else {
		// A WASI module gets exactly the caller's variables, as any WASI
		// runtime gives it: none of an interpreter's defaults.
		p.env, err = runtimes.UserEnv(spec.Env)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return p, nil
}

// wasmNames lists the runtimes with a wasm build, for messages.
func (x *Executor) wasmNames() string {
	return strings.Join(x.opts.Runtimes.Names(func(rt *runtimes.Runtime) bool { return rt.Wasm != nil }), ", ")
}

// pickBackend resolves the backend of a run: auto takes the process
// backend where it works and falls back to wasm where it does not (the
// result's isolation says which ran).

func (x *Executor) pickBackend(b run.Backend, p *plan) (run.Backend, error) {
	if p.rt == nil {
		return run.BackendWasm, nil
	}
	switch b {
	case run.BackendProcess:
		if x.processErr != nil {
			return "", fmt.Errorf("%w: the process backend cannot run here: %w", ErrUnavailable, x.processErr)
		}
		return b, nil
	case run.BackendWasm:
		if !wasmFits(p) {
			return "", fmt.Errorf("%w: runtime %q has no wasm build; the wasm backend offers %s and .wasm modules", ErrInvalid, p.rt.Name, x.wasmNames())
		}
		return b, nil
	}
	if x.processErr == nil {
		return run.BackendProcess, nil
	}
	if wasmFits(p) {
		return run.BackendWasm, nil
	}
	return "", fmt.Errorf("%w: the process backend cannot run here (%w), and runtime %q has no wasm build", ErrUnavailable, x.processErr, p.rt.Name)
}

// Run runs a plan made by Plan. The result is non-nil unless the run
// never started (a file the workspace cannot take); err is set too when
// the sandbox itself failed (Status internal_error).
func (x *Executor) Run(ctx context.Context, rp *run.Plan, stream run.Stream) (*run.Result, error) {
	p, ok := rp.Detail.(*plan)
	if !ok {
		return nil, fmt.Errorf("%w: the plan was not made by this executor", ErrInvalid)
	}
	spec := rp.Spec
	if p.backend == run.BackendWasm {
		res, err := x.runWasm(ctx, spec, p, stream)
		if res != nil && p.rt != nil {
			res.Runtime = p.rt.Name
		}
		return res, err
	}
	res, err := x.runProcess(ctx, spec, p, stream)
	if res != nil {
		res.Runtime = p.rt.Name
		if x.opts.Versions {
			res.Version, _ = x.opts.Runtimes.Version(ctx, p.rt)
		}
	}
	return res, err
}

func (x *Executor) runProcess(ctx context.Context, spec *run.Spec, p *plan, stream run.Stream) (*run.Result, error) {
	if e := x.takeWarm(ctx, spec, p); e != nil {
		res, err := x.runWarm(ctx, spec, p, e, stream)
		if !errors.Is(err, errNotTaken) {
			return res, err
		}
	}
	r := x.process
	tenant := admission.Tenant(ctx)
	ws, err := r.NewWorkspace(p.limits.Tmpfs)
	if err != nil {
		return run.InternalError(err), err
	}
	defer x.cleanup("remove workspace", ws.ID(), ws.Close)
	if err := placeFiles(ctx, ws, spec.Files); err != nil {
		return placeFailed(ctx, err)
	}
	var compiled *run.Result
	if argv := p.rt.CompileArgv(p.entry); argv != nil {
		if err := ws.MkdirInternal(runtimes.BinaryPath); err != nil {
			return run.InternalError(err), err
		}
		compiled, err = r.Run(ctx, ws, isolate.Exec{Argv: argv, Env: p.env, Stream: run.Stream{Stderr: stream.Stderr, Spool: stream.Spool}, Limits: p.compileLimits, Tenant: tenant})
		if err != nil || compiled.Status != run.StatusOK {
			res := *compiled
			res.Compile = compiled
			res.Stdout, res.Stderr = []byte{}, []byte{}
			res.StdoutFile, res.StderrFile = nil, nil
			if res.Reason == "" {
				res.Reason = "compilation failed"
			} else {
				res.Reason = "compilation " + res.Reason
			}
			return &res, err
		}
	}
	res, err := r.Run(ctx, ws, isolate.Exec{
		Argv:   p.rt.RunArgv(p.entry, spec.Args),
		Env:    p.env,
		Stream: withStdin(spec, stream),
		Limits: p.limits,
		Tenant: tenant,
	})
	res.Compile = compiled
	if err == nil {
		var cerr error
		res.Files, res.FilesTruncated, cerr = ws.Collect(r.CollectLimits())
		if cerr != nil {
			x.log.Warn("collect workspace files", "run", ws.ID(), "err", cerr)
		}
	}
	return res, err
}

// placeFiles writes a run's input files into its workspace, and stops
// when ctx ends (the client went away): a body of many files is not
// placed for nobody. A full workspace or a name that clashes (a file and
// a directory of the same name) is the client's to fix.
func placeFiles(ctx context.Context, ws *isolate.Workspace, files []run.File) error {
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("place the input files: %w", err)
		}
		if err := ws.WriteFile(f); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	}
	return nil
}

// placeFailed is the answer of a run whose files could not be placed:
// canceled when its caller went (the run's, whatever its phase), else
// the client's error.
func placeFailed(ctx context.Context, err error) (*run.Result, error) {
	if ctx.Err() != nil {
		return run.Canceled(context.Cause(ctx), "its files were placed"), nil
	}
	return nil, err
}

// withStdin is stream with the spec's stdin when the stream brings none.
func withStdin(spec *run.Spec, stream run.Stream) run.Stream {
	if stream.Stdin == nil && spec.Stdin != nil {
		stream.Stdin = bytes.NewReader(spec.Stdin)
	}
	return stream
}

// takeWarm returns a ready sandbox for spec, or nil: only interpreted runs
// with a pool, the pool's tmpfs size, and none of the variables the warm
// runner names as acting at interpreter start (PYTHON*), which a warm
// sandbox is past.
func (x *Executor) takeWarm(ctx context.Context, spec *run.Spec, p *plan) *pool.Entry {
	pl := x.pools[p.rt.Name]
	if pl == nil || p.rt.Compile != nil || !pl.Fits(p.limits) {
		return nil
	}
	for k := range spec.Env {
		for _, prefix := range p.rt.Warm.StartEnv {
			if strings.HasPrefix(k, prefix) {
				return nil
			}
		}
	}
	return pl.Take(ctx)
}

// errNotTaken: a warm sandbox could not take the run (its limits could
// not be applied); the run goes cold.
var errNotTaken = errors.New("warm sandbox did not take the run")

// runWarm runs spec in a warm sandbox. The result is a cold run's in every
// field but isolation.warm.
func (x *Executor) runWarm(ctx context.Context, spec *run.Spec, p *plan, e *pool.Entry, stream run.Stream) (*run.Result, error) {
	defer x.cleanup("remove warm sandbox", e.Workspace.ID(), e.Close)
	if err := placeFiles(ctx, e.Workspace, spec.Files); err != nil {
		return placeFailed(ctx, err)
	}
	// The pool's sandbox started without the run's thread sizing; the
	// runner sets it with the user's variables, which win.
	env := map[string]string{}
	for _, kv := range runtimes.ThreadEnv(p.limits.CPUs) {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	maps.Copy(env, spec.Env)
	control, err := json.Marshal(map[string]any{"entry": p.entry, "args": nonNil(spec.Args), "env": env})
	if err != nil {
		return nil, err
	}
	err = e.Process.Activate(ctx, isolate.Activation{
		Limits: p.limits, Stream: withStdin(spec, stream), Control: control, Tenant: admission.Tenant(ctx),
	})
	if err != nil {
		x.log.Info("warm sandbox refused the run; running it cold", "err", err)
		return nil, errNotTaken
	}
	res, err := e.Process.Wait()
	res.Isolation.Warm = true
	res.Isolation.Zygote = e.Process.Entered()
	if err == nil {
		var cerr error
		res.Files, res.FilesTruncated, cerr = e.Workspace.Collect(x.process.CollectLimits())
		if cerr != nil {
			x.log.Warn("collect workspace files", "run", e.Workspace.ID(), "err", cerr)
		}
	}
	return res, err
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
