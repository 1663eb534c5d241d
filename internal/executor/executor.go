// Package executor turns a run.Spec into a run.Result: it checks the spec,
// resolves the runtime and the limits, picks a backend, prepares the
// workspace, compiles if the language needs it, runs, and collects the files
// the run produced. Every front end (CLI, HTTP, MCP) calls it.
package executor

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"

	"github.com/sandboxd/sandboxd/internal/isolate"
	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/runtimes"
)

// Options configure an Executor. Zero fields take defaults.
type Options struct {
	Runtimes *runtimes.Registry
	// Defaults fill unset limits (default limits.Defaults()).
	Defaults limits.Limits
	// Ceiling caps what any spec may ask for (default
	// limits.DefaultCeiling()).
	Ceiling limits.Limits
	// Isolate configures the process backend.
	Isolate isolate.Config
	// Versions makes results carry the runtime's version (probed once per
	// runtime, then cached).
	Versions bool
	Logger   *slog.Logger
}

// Executor runs specs. It is safe for concurrent use.
type Executor struct {
	opts    Options
	process *isolate.Runner
	// processErr says why the process backend is not available.
	processErr error
	log        *slog.Logger
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
	x.process, x.processErr = isolate.New(opts.Isolate)
	if x.processErr != nil {
		return nil, fmt.Errorf("no backend can run here: process: %w", x.processErr)
	}
	return x, nil
}

// Runtimes is the registry the executor resolves runtimes in.
func (x *Executor) Runtimes() *runtimes.Registry { return x.opts.Runtimes }

// Process is the process backend, for doctor and tests.
func (x *Executor) Process() *isolate.Runner { return x.process }

// Stream carries a run's live I/O. Every field may be nil.
type Stream struct {
	// Stdin is copied to the program's stdin (after Spec.Stdin, if both
	// are set, Stdin wins).
	Stdin io.Reader
	// Stdout and Stderr receive the program's output as it arrives.
	Stdout, Stderr io.Writer
}

// baseEnv is every program's environment before the runtime's and the
// spec's additions: nothing of the host's.
var baseEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=" + isolate.WorkspaceDir,
	"USER=sandbox",
	"LOGNAME=sandbox",
	"LANG=C.UTF-8",
	"TMPDIR=/tmp",
}

// plan is a checked spec, ready to run.
type plan struct {
	rt            *runtimes.Runtime
	entry         string
	limits        limits.Limits
	compileLimits limits.Limits
	env           []string
}

// Check validates a spec without running it. Its errors wrap ErrInvalid
// (or runtimes.ErrUnknownRuntime, limits.ErrInvalid) and say what is wrong.
func (x *Executor) Check(spec *run.Spec) error {
	_, err := x.plan(spec)
	return err
}

func (x *Executor) plan(spec *run.Spec) (*plan, error) {
	if len(spec.Files) == 0 {
		return nil, fmt.Errorf("%w: no files: a run needs at least the file to run", ErrInvalid)
	}
	seen := map[string]bool{}
	for _, f := range spec.Files {
		if _, err := isolate.CleanName(f.Name); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		if seen[f.Name] {
			return nil, fmt.Errorf("%w: file %q given twice", ErrInvalid, f.Name)
		}
		seen[f.Name] = true
	}
	entry := spec.Entry
	if entry == "" {
		entry = spec.Files[0].Name
	}
	if !seen[entry] {
		return nil, fmt.Errorf("%w: entry %q is not one of the files", ErrInvalid, entry)
	}
	switch spec.Backend {
	case run.BackendAuto, run.BackendProcess:
	case run.BackendWasm:
		return nil, fmt.Errorf("%w: backend %q is not built yet; use %q", ErrInvalid, spec.Backend, run.BackendProcess)
	default:
		return nil, fmt.Errorf("%w: unknown backend %q: use %q or %q", ErrInvalid, spec.Backend, run.BackendProcess, run.BackendWasm)
	}
	for _, a := range spec.Args {
		if strings.ContainsRune(a, 0) {
			return nil, fmt.Errorf("%w: an argument contains a NUL byte", ErrInvalid)
		}
	}
	var rt *runtimes.Runtime
	var err error
	if spec.Runtime != "" {
		rt, err = x.opts.Runtimes.Lookup(spec.Runtime)
	} else {
		rt, err = x.opts.Runtimes.ForFile(entry)
	}
	if err != nil {
		return nil, err
	}
	if !x.opts.Runtimes.Available(rt) {
		return nil, fmt.Errorf("%w: runtime %q is not installed on this host (%s is missing)", ErrUnavailable, rt.Name, rt.Binary)
	}
	p := &plan{rt: rt, entry: entry}
	p.limits = spec.Limits.Merge(x.opts.Defaults)
	if err := p.limits.Validate(x.opts.Ceiling); err != nil {
		return nil, err
	}
	if rt.Compile != nil {
		p.compileLimits = spec.CompileLimits.Merge(x.opts.Defaults)
		if err := p.compileLimits.Validate(x.opts.Ceiling); err != nil {
			return nil, fmt.Errorf("compile limits: %w", err)
		}
		// The compiler writes the program into the run's workspace.
		p.compileLimits.Tmpfs = p.limits.Tmpfs
	}
	p.env, err = buildEnv(rt.Env, spec.Env)
	if err != nil {
		return nil, err
	}
	return p, nil
}

func buildEnv(rtEnv []string, user map[string]string) ([]string, error) {
	env := append(append([]string{}, baseEnv...), rtEnv...)
	keys := make([]string, 0, len(user))
	for k, v := range user {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0) {
			return nil, fmt.Errorf("%w: environment variable %q: names must be non-empty without '=' or NUL, values without NUL", ErrInvalid, k)
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		// Later entries win for programs that read the last one; drop the
		// earlier so every program sees one value.
		env = dropKey(env, k)
		env = append(env, k+"="+user[k])
	}
	return env, nil
}

func dropKey(env []string, key string) []string {
	out := env[:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// Run runs a spec. A spec error returns (nil, err) with err wrapping
// ErrInvalid, ErrUnavailable, limits.ErrInvalid or
// runtimes.ErrUnknownRuntime. Otherwise the result is non-nil; err is set
// too when the sandbox itself failed (Status internal_error).
func (x *Executor) Run(ctx context.Context, spec *run.Spec, stream Stream) (*run.Result, error) {
	p, err := x.plan(spec)
	if err != nil {
		return nil, err
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

func (x *Executor) runProcess(ctx context.Context, spec *run.Spec, p *plan, stream Stream) (*run.Result, error) {
	r := x.process
	ws, err := r.NewWorkspace(p.limits.Tmpfs)
	if err != nil {
		return internalError(err), err
	}
	defer func() {
		if err := ws.Close(); err != nil {
			x.log.Error("remove workspace", "run", ws.ID(), "err", err)
		}
	}()
	for _, f := range spec.Files {
		if err := ws.WriteFile(f); err != nil {
			// The workspace is full or a name clashes (a file and a
			// directory of the same name): the client's to fix.
			return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	}
	var compiled *run.Result
	if argv := p.rt.CompileArgv(p.entry); argv != nil {
		if err := ws.MkdirInternal(runtimes.BinaryPath); err != nil {
			return internalError(err), err
		}
		compiled, err = r.Run(ctx, ws, isolate.Exec{Argv: argv, Env: p.env, Stderr: stream.Stderr, Limits: p.compileLimits})
		if err != nil || compiled.Status != run.StatusOK {
			res := *compiled
			res.Compile = compiled
			res.Stdout, res.Stderr = []byte{}, []byte{}
			if res.Reason == "" {
				res.Reason = "compilation failed"
			} else {
				res.Reason = "compilation " + res.Reason
			}
			return &res, err
		}
	}
	var stdin io.Reader
	if spec.Stdin != nil {
		stdin = bytes.NewReader(spec.Stdin)
	}
	if stream.Stdin != nil {
		stdin = stream.Stdin
	}
	res, err := r.Run(ctx, ws, isolate.Exec{
		Argv:   p.rt.RunArgv(p.entry, spec.Args),
		Env:    p.env,
		Stdin:  stdin,
		Stdout: stream.Stdout,
		Stderr: stream.Stderr,
		Limits: p.limits,
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

func internalError(err error) *run.Result {
	return &run.Result{Status: run.StatusInternalError, ExitCode: -1, Error: err.Error(), Reason: "the sandbox failed: " + err.Error(), Stdout: []byte{}, Stderr: []byte{}}
}
