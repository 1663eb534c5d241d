package executor

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/runtimes"
	"github.com/sandboxd/sandboxd/internal/wasm"
)

// wasmModules maps the runtimes the wasm backend offers onto the
// interpreters built for WASI.
var wasmModules = map[string]struct{ module, argv0 string }{
	"python":     {"python", "python"},
	"javascript": {"quickjs", "qjs"},
}

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
func (x *Executor) runWasm(ctx context.Context, spec *run.Spec, p *plan, stream Stream) (*run.Result, error) {
	r, err := x.wasmRunner(ctx)
	if err != nil {
		return internalError(err), err
	}
	if err := r.Check(p.limits, spec.Limits); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	e := wasm.Exec{Files: spec.Files, Stdin: stdinOf(spec, stream), Stdout: stream.Stdout, Stderr: stream.Stderr, Limits: p.limits}
	// WASI has no /tmp: point temporary files at the workspace.
	for _, kv := range p.env {
		if !strings.HasPrefix(kv, "TMPDIR=") {
			e.Env = append(e.Env, kv)
		}
	}
	e.Env = append(e.Env, "TMPDIR=/workspace")
	if p.rt == nil {
		for _, f := range spec.Files {
			if f.Name == p.entry {
				e.ModuleBytes = f.Content
			}
		}
		e.Argv = append([]string{p.entry}, spec.Args...)
	} else {
		m, ok := wasmModules[p.rt.Name]
		if !ok {
			return nil, fmt.Errorf("%w: runtime %q has no wasm build; the wasm backend offers python, javascript and .wasm modules", ErrInvalid, p.rt.Name)
		}
		if err := r.Available(m.module); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		e.Module = m.module
		e.Argv = append([]string{m.argv0, "/workspace/" + p.entry}, spec.Args...)
	}
	res, err := r.Run(ctx, e)
	if res != nil && p.rt != nil && x.opts.Versions {
		if v, verr := r.Versions(); verr == nil {
			res.Version = v[wasmModules[p.rt.Name].module]
		}
	}
	if errors.Is(err, wasm.ErrInvalid) {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return res, err
}

// wasmFits reports whether the wasm backend can take spec's runtime.
func wasmFits(p *plan) bool {
	if p.rt == nil {
		return true
	}
	_, ok := wasmModules[p.rt.Name]
	return ok
}

// Backends lists the backends that can run rt on this host now, of those
// its registry entry names: the process backend where it works and rt's
// binary is installed, the wasm backend where rt has a WASI interpreter
// and it is built (scripts/build-wasm-runtimes.sh).
func (x *Executor) Backends(rt *runtimes.Runtime) []run.Backend {
	var out []run.Backend
	for _, b := range rt.Backends {
		switch run.Backend(b) {
		case run.BackendProcess:
			if x.processErr == nil && x.opts.Runtimes.Available(rt) {
				out = append(out, run.BackendProcess)
			}
		case run.BackendWasm:
			if m, ok := wasmModules[rt.Name]; ok && wasm.Built(x.opts.Wasm.RuntimesDir, m.module) == nil {
				out = append(out, run.BackendWasm)
			}
		}
	}
	return out
}
