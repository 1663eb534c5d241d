package executor

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/runtimes"
	"github.com/sandboxd/sandboxd/internal/wasm"
	"github.com/sandboxd/sandboxd/internal/workspace"
)

// isWasmModule reports whether the entry is a WASI module to run as is.
func isWasmModule(entry string) bool { return strings.EqualFold(path.Ext(entry), ".wasm") }

// wasmRunner returns the wasm backend, made on first use (its wazero
// runtime and compilation cache are built once per process).
func (x *Executor) wasmRunner(ctx context.Context) (*wasm.Runner, error) {
	x.wasmMu.Lock()
	defer x.wasmMu.Unlock()
	if x.wasm != nil {
		return x.wasm, nil
	}
	cfg := x.opts.Wasm
	if cfg.Logger == nil {
		cfg.Logger = x.log
	}
	r, err := wasm.New(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("start the wasm backend: %w", err)
	}
	x.wasm, x.wasmCtx = r, context.WithoutCancel(ctx)
	return r, nil
}

// runWasm runs spec on the wasm backend: a .wasm entry as is, python and
// javascript in their WASI interpreters.
func (x *Executor) runWasm(ctx context.Context, spec *run.Spec, p *plan, stream run.Stream) (*run.Result, error) {
	r, err := x.wasmRunner(ctx)
	if err != nil {
		return run.InternalError(err), err
	}
	if err := r.Check(p.limits, spec.Limits); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	e := wasm.Exec{Files: spec.Files, Stream: withStdin(spec, stream), Limits: p.limits}
	e.Env = p.env
	if p.rt != nil {
		// WASI has no /tmp: point an interpreter's temporary files at the
		// workspace.
		e.Env = append(slices.DeleteFunc(slices.Clone(p.env), func(kv string) bool { return strings.HasPrefix(kv, "TMPDIR=") }), "TMPDIR="+workspace.Dir)
	}
	if p.rt == nil {
		for _, f := range spec.Files {
			if f.Name == p.entry {
				e.ModuleBytes = f.Content
			}
		}
		e.Argv = append([]string{p.entry}, spec.Args...)
	} else {
		m := p.rt.Wasm
		if err := r.Available(m.Module); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		e.Module = m.Module
		e.Argv = append([]string{m.Argv0, path.Join(workspace.Dir, p.entry)}, spec.Args...)
	}
	res, err := r.Run(ctx, e)
	if res != nil && p.rt != nil && x.opts.Versions {
		if v, verr := r.Versions(); verr == nil {
			res.Version = v[p.rt.Wasm.Module]
		}
	}
	if errors.Is(err, wasm.ErrInvalid) {
		res.Close()
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return res, err
}

// wasmFits reports whether the wasm backend can take the plan's runtime.
func wasmFits(p *plan) bool { return p.rt == nil || p.rt.Wasm != nil }

// Backends lists the backends that can run rt on this host now, of those
// its registry entry names: the process backend where it works and rt's
// binary is installed, the wasm backend where rt has a WASI interpreter
// and it is built (scripts/build-wasm-runtimes.sh).
func (x *Executor) Backends(rt *runtimes.Runtime) []run.Backend {
	var out []run.Backend
	for _, b := range rt.Backends() {
		switch run.Backend(b) {
		case run.BackendProcess:
			if x.processErr == nil && x.opts.Runtimes.Available(rt) {
				out = append(out, run.BackendProcess)
			}
		case run.BackendWasm:
			if rt.Wasm != nil && wasm.Built(x.opts.Wasm.RuntimesDir, rt.Wasm.Module) == nil {
				out = append(out, run.BackendWasm)
			}
		}
	}
	return out
}
