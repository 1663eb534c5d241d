package wasm

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"runtime"
	"strings"
	"time"

	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/workspace"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/experimental/sysfs"
	"github.com/tetratelabs/wazero/sys"
)

// guestJob is one run as the code that instantiates the module sees it, in
// this process or in a worker: everything is plain data, so a job crosses
// the worker pipe as is.
type guestJob struct {
	// Module is the .wasm path.
	Module string
	Argv   []string
	Env    []string
	// Dir is the workspace on the host.
	Dir    string
	Mounts []Mount
	// Memory caps the linear memory, in bytes; InitialMemory is the size
	// it starts at.
	Memory, InitialMemory uint64
	// Quota of the workspace, and what the input files already use.
	MaxBytes, MaxFile, MaxEntries int64
	UsedBytes, Entries            int64
	// MaxOpen caps the files the guest has open at once.
	MaxOpen int64
	// Snapshot allows a start from a snapshot of the module's start-up
	// (snapshot.go): set for the interpreters the runner ships, never for
	// a client's module.
	Snapshot bool
}

// endKind says how a guest ended.
type endKind uint8

const (
	// endReturned: _start returned (exit status 0).
	endReturned endKind = iota + 1
	// endExit: the guest called proc_exit (Code).
	endExit
	// endTrap: a wasm trap (Trap is wazero's message).
	endTrap
	// endClosed: the module was closed under it: the run's context ended
	// (in-process only; a worker is killed instead).
	endClosed
	// endError: not the guest's doing: instantiation or a host function
	// failed (Err).
	endError
)

// guestEnd is how a guest ended, with the figures measured where it ran.
type guestEnd struct {
	Kind endKind
	Code uint32
	Trap string
	Err  string
	// CPU is the CPU time of the thread the guest ran on.
	CPU time.Duration
	// Peak is the largest size the linear memory had, in bytes.
	Peak uint64
	// MemRefused: a memory grow was refused for the limit.
	MemRefused bool
	// QuotaHit: a workspace write or create was refused for the quota.
	QuotaHit bool
	// Touched: the guest may have changed the workspace (else there are
	// no produced files to collect).
	Touched bool
	// Snapshot: the guest started from a snapshot of its start-up.
	Snapshot bool
}

// guestHooks let the executor watch a guest while it runs. Both are
// optional.
type guestHooks struct {
	// started is called on the guest's thread just before the guest
	// starts, with a reader of that thread's CPU time.
	started func(cpu func() time.Duration)
	// grown is told each new peak of the linear memory.
	grown func(size uint64)
}

// guestIO are a run's standard streams.
type guestIO struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

// runGuest instantiates the compiled module, which runs _start, on the
// calling goroutine locked to its thread, and says how it ended; or, for
// an interpreter that can start from a snapshot of its start-up
// (snapshot.go), instantiates it from one. ctx ends the guest's sleeps;
// with a runtime made WithCloseOnContextDone it also closes the guest.
func runGuest(ctx context.Context, rt wazero.Runtime, cm wazero.CompiledModule, job *guestJob, gio guestIO, hooks guestHooks) guestEnd {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	snap := snapshots.lookup(ctx, rt, cm, job, gio)

	mem := newMemoryCap(job.Memory)
	if hooks.grown != nil {
		// Past the initial size only: that one is known from the module.
		mem.grown = func(size uint64) {
			if size > job.InitialMemory {
				hooks.grown(size)
			}
		}
	}
	q := &quota{
		maxBytes: job.MaxBytes, maxFile: job.MaxFile, maxEntries: job.MaxEntries,
		usedBytes: job.UsedBytes, entries: job.Entries, maxOpen: job.MaxOpen,
	}
	dir := sysfs.DirFS(job.Dir)
	cfg := guestConfig(ctx, job, gio, &workspaceFS{FS: dir, q: q}, dir, q)

	read, _ := threadClock()
	t0 := read()
	if hooks.started != nil {
		hooks.started(func() time.Duration { return read() - t0 })
	}
	var err error
	if snap != nil {
		err = snap.run(experimental.WithMemoryAllocator(ctx, mem), rt, cm, cfg)
	} else {
		var m api.Module
		m, err = rt.InstantiateModule(experimental.WithMemoryAllocator(ctx, mem), cm, cfg)
		if m != nil {
			_ = m.Close(context.WithoutCancel(ctx))
		}
	}
	end := guestEnd{CPU: read() - t0}
	end.Peak = mem.peak.Load()
	end.MemRefused = mem.refused.Load()
	end.QuotaHit = q.wasHit()
	end.Touched = q.wasTouched()
	end.Snapshot = snap != nil
	end.Kind, end.Code, end.Trap, end.Err = guestEnded(err)
	return end
}

// guestConfig is a run's module configuration: its argv, environment and
// streams, the workspace (wfs, over raw) at /workspace and at "/", and the
// job's read-only mounts, whose open files q counts.
//
// The mounts' roots are charged to q up front, one open file each: wazero
// opens a root lazily, when the guest first uses it, so a run's count
// would otherwise depend on which mounts it happened to use (and a run
// from a snapshot, whose start-up used them in another instance, would be
// let open more files than the same run started cold).
func guestConfig(ctx context.Context, job *guestJob, gio guestIO, wfs, raw experimentalsys.FS, q *quota) wazero.ModuleConfig {
	// The same directory at "/" too: WASI has no working directory, and
	// wasi-libc resolves a relative path against "/", so "out.txt" lands in
	// the workspace, as from the process backend's cwd. Nothing of the host
	// is there: "/etc/passwd" is the workspace's etc/passwd, which does not
	// exist.
	fsc := wazero.NewFSConfig().(sysfs.FSConfig).WithSysFSMount(&rootFS{FS: wfs, raw: raw}, workspace.Dir)
	fsc = fsc.(sysfs.FSConfig).WithSysFSMount(&rootFS{FS: wfs, raw: raw}, "/")
	for _, m := range job.Mounts {
		ro := &sysfs.ReadFS{FS: sysfs.DirFS(m.Host)}
		fsc = fsc.(sysfs.FSConfig).WithSysFSMount(&rootFS{FS: &countingFS{FS: ro, q: q}, raw: ro}, m.Guest)
	}
	q.mu.Lock()
	q.open += 2 + int64(len(job.Mounts))
	q.mu.Unlock()
	cfg := wazero.NewModuleConfig().
		// Anonymous: many instances of one module may run at once.
		WithName("").
		WithArgs(job.Argv...).
		WithStdin(gio.stdin).
		WithStdout(gio.stdout).
		WithStderr(gio.stderr).
		WithFSConfig(fsc).
		WithSysWalltime().
		WithSysNanotime().
		WithNanosleep(sleeper(ctx)).
		WithOsyield(runtime.Gosched).
		// wazero's default is a fixed seed: every run would draw the same
		// "random" numbers (Python's hash seed, uuid4, secrets).
		WithRandSource(rand.Reader)
	for _, kv := range job.Env {
		k, v, _ := strings.Cut(kv, "=")
		cfg = cfg.WithEnv(k, v)
	}
	return cfg
}

// guestEnded says how a guest ended from the error its instantiation (or
// its entry point's call) returned.
func guestEnded(err error) (kind endKind, code uint32, trap, msg string) {
	var exitErr *sys.ExitError
	switch {
	case err == nil:
		return endReturned, 0, "", ""
	case errors.As(err, &exitErr):
		if c := exitErr.ExitCode(); c == sys.ExitCodeDeadlineExceeded || c == sys.ExitCodeContextCanceled {
			return endClosed, c, "", ""
		}
		return endExit, exitErr.ExitCode(), "", ""
	}
	if t, ok := asTrap(err); ok {
		return endTrap, 0, t.text, ""
	}
	// wazero's error carries the guest's stack trace, whose function
	// names are the module's.
	return endError, 0, "", run.Clip(err.Error(), run.MaxMessage)
}

// sleeper is the guest's sleep (WASI poll_oneoff on a clock). When ctx
// ends first, the guest ends there: returning early would let it go on as
// if the time had passed (run the timer's callback, print) until its next
// loop header.
func sleeper(ctx context.Context) func(ns int64) {
	return func(ns int64) {
		t := time.NewTimer(time.Duration(ns))
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			exitGuest(ctx)
		}
	}
}

// exitGuest ends the guest from inside a host function, as proc_exit
// does: wazero turns the panic into the *sys.ExitError InstantiateModule
// returns, with the code it uses for a closed context.
func exitGuest(ctx context.Context) {
	code := sys.ExitCodeContextCanceled
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		code = sys.ExitCodeDeadlineExceeded
	}
	panic(sys.NewExitError(code))
}
