package wasm

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/sandboxd/sandboxd/internal/output"
	"github.com/sandboxd/sandboxd/internal/workspace"

	"github.com/sandboxd/sandboxd/internal/run"
)

// Causes of a run's context ending that the runner itself decided.
var (
	errTimeout = errors.New("wall-clock limit reached")
	errCPU     = errors.New("CPU time limit reached")
	errOutput  = errors.New("output limit reached")
	// errMemory: the kernel killed the worker at its cgroup's limit.
	errMemory = errors.New("memory limit reached")
)

// Run executes e in a fresh module instance and returns once the instance
// is gone and its workspace collected and removed. The result is never nil.
// A caller that goes, whenever it does, gets status canceled and no error
// (timeout for a passed deadline). When the run could not happen (a module that is not built or does not
// compile, a workspace that cannot be made) its Status is internal_error
// and the error is returned too: errors.Is(err, ErrNotBuilt) or ErrInvalid
// say that it is the caller's to fix.
func (r *Runner) Run(ctx context.Context, e Exec) (*run.Result, error) {
	res := &run.Result{ID: newRunID(), ExitCode: -1, Isolation: r.isolation()}
	err := r.run(ctx, e, res)
	switch {
	case err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()):
		// The caller gave up before the guest started (waiting for a
		// compilation or a worker): as classify says it once it started,
		// and not the sandbox's failure.
		res.SetCanceled(context.Cause(ctx))
		err = nil
	case err != nil:
		// As run.InternalError: the error can carry what the guest or
		// its module said (a worker's message, wazero's stack trace).
		msg := run.Clip(err.Error(), run.MaxMessage)
		res.Status = run.StatusInternalError
		res.Error = msg
		res.Reason = "the sandbox failed: " + msg
	}
	if res.Stdout == nil {
		res.Stdout = []byte{}
	}
	if res.Stderr == nil {
		res.Stderr = []byte{}
	}
	return res, err
}

func (r *Runner) run(ctx context.Context, e Exec, res *run.Result) error {
	if err := r.begin(); err != nil {
		return err
	}
	defer r.runs.Done()
	if err := checkExec(e); err != nil {
		return err
	}
	l := e.Limits
	module := e.Module
	if len(e.ModuleBytes) > 0 {
		var err error
		if module, err = r.storeUpload(e.ModuleBytes); err != nil {
			return err
		}
	}
	path, mounts, err := r.resolve(module)
	if err != nil {
		return err
	}
	mod, release, err := r.compiledFor(ctx, e, path, l)
	var cle *compileLimitError
	if errors.As(err, &cle) {
		cle.report(res, l)
		return nil
	}
	if err != nil {
		return err
	}
	defer release()

	ws, err := newWorkspace(r.cfg.TempDir, res.ID, e.Files)
	if err != nil {
		return err
	}
	defer func() {
		if err := ws.remove(); err != nil {
			r.log.Error("remove wasm workspace", "run", res.ID, "err", err)
		}
	}()

	if need := uint64(mod.minPages) * wasmPage; need > uint64(l.Memory) {
		res.Status = run.StatusMemoryLimit
		res.PeakMemory = int64(need)
		res.Reason = fmt.Sprintf("not started: the module's initial memory of %d bytes is over the memory limit of %s", need, l.Memory)
		return nil
	}
	job := &guestJob{
		Module: path, Argv: e.Argv, Env: e.Env, Dir: ws.dir, Mounts: mounts,
		Memory: uint64(l.Memory), InitialMemory: uint64(mod.minPages) * wasmPage,
		MaxBytes: int64(l.Tmpfs), MaxFile: int64(l.FileSize), MaxEntries: workspace.Inodes(int64(l.Tmpfs)),
		UsedBytes: ws.bytes, Entries: ws.files,
		// The preopened directories (the workspace twice, the mounts) are
		// open files too; the limit is for the guest's own.
		MaxOpen: int64(l.OpenFiles) + 2 + int64(len(mounts)),
		// The interpreters this runner ships may start from a snapshot of
		// their start-up; a client's module never does: a snapshot is
		// shared by all the runs of its key, and what a module's own
		// start-up draws (a key, a seed) must stay each run's.
		Snapshot: !r.cfg.ColdStarts && isShipped(e),
	}
	ex := &execution{
		mod: mod, job: job, stdin: e.Stdin,
		stdout:  output.New(int64(l.Output), e.Stdout, nil),
		stderr:  output.New(int64(l.Output), e.Stderr, nil),
		timeout: l.Timeout.Std(), cpu: l.CPUTime.Std(),
	}
	ex.stdout.SetSpool(e.Spool)
	ex.stderr.SetSpool(e.Spool)
	end, cause, wall, err := r.exec.execute(ctx, ex)
	if err != nil {
		// The result has none of the output: nor its spool files.
		ex.stdout.File().Close()
		ex.stderr.File().Close()
		return err
	}
	res.WallTime, res.CPUTime, res.PeakMemory = wall, end.CPU, int64(end.Peak)
	res.Isolation.Warm = end.Snapshot
	res.Stdout, res.StdoutTruncated = ex.stdout.Result()
	res.Stderr, res.StderrTruncated = ex.stderr.Result()
	res.StdoutFile, res.StderrFile = ex.stdout.File(), ex.stderr.File()
	if err := classify(res, end, cause, l); err != nil {
		return err
	}

	// A guest killed in a worker reports nothing: look at the workspace.
	if end.Touched || end.Kind == 0 {
		var cerr error
		res.Files, res.FilesTruncated, cerr = ws.collect(r.cfg.Collect)
		if cerr != nil {
			r.log.Warn("collect wasm workspace files", "run", res.ID, "err", cerr)
		}
	}
	return nil
}

// isShipped reports whether e runs one of the interpreters by name.
func isShipped(e Exec) bool {
	_, ok := LookupInterpreter(e.Module)
	return ok && len(e.ModuleBytes) == 0
}

// checkExec refuses what cannot be passed to a guest.
func checkExec(e Exec) error {
	if len(e.Argv) == 0 {
		return fmt.Errorf("%w: empty argv", ErrInvalid)
	}
	for _, a := range e.Argv {
		if strings.ContainsRune(a, 0) {
			return fmt.Errorf("%w: an argument contains a NUL byte", ErrInvalid)
		}
	}
	for _, kv := range e.Env {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" || strings.ContainsRune(kv, 0) {
			return fmt.Errorf("%w: environment entry %s is not KEY=VALUE without NUL", ErrInvalid, run.Quote(kv, run.MaxName))
		}
	}
	l := e.Limits
	if l.Timeout <= 0 || l.Memory <= 0 || l.Output <= 0 || l.Tmpfs <= 0 || l.FileSize <= 0 || l.OpenFiles <= 0 {
		return fmt.Errorf("%w: limits are not complete (merge them with the defaults): %+v", ErrInvalid, l)
	}
	return nil
}
