package wasm

import (
	"errors"
	"fmt"

	"github.com/sandboxd/sandboxd/internal/errdefs"
	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
)

var (
	// ErrInvalid: the Exec cannot run as given (no module, a module that
	// does not compile, a bad file name). The message says why.
	ErrInvalid = errdefs.New(errdefs.ErrInvalidArgument, "invalid wasm run")
	// ErrNotBuilt: an interpreter is not built; errors.As gives a
	// *NotBuiltError with the command that builds it.
	ErrNotBuilt = errdefs.New(errdefs.ErrUnavailable, "wasm runtime not built")
	// ErrUnsupportedLimit: a limit the client set cannot be enforced on
	// this backend; errors.As gives a *LimitError.
	ErrUnsupportedLimit = errdefs.New(errdefs.ErrInvalidArgument, "limit not enforceable on the wasm backend")
	// ErrClosed: the Runner was closed.
	ErrClosed = errdefs.New(errdefs.ErrUnavailable, "wasm runner closed")
)

// NotBuiltError says that an interpreter's files are missing, and how to
// build them.
type NotBuiltError struct {
	Interpreter string
	// Missing is the first file or directory not found.
	Missing string
	// Dir is the runtimes directory looked in.
	Dir string
	Err error
}

func (e *NotBuiltError) Error() string {
	return fmt.Sprintf("the %s runtime of the wasm backend is not built (%s is missing): run `%s` (SANDBOXD_WASM_DIR=%s)",
		e.Interpreter, e.Missing, BuildCommand, e.Dir)
}

// Is makes errors.Is(err, ErrNotBuilt) hold, and so its class.
func (e *NotBuiltError) Is(target error) bool { return errors.Is(ErrNotBuilt, target) }

func (e *NotBuiltError) Unwrap() error { return e.Err }

// compileLimitError: compiling a module (in ModeWorker, in a compile
// worker) took more memory or time than the run that asked for it has.
type compileLimitError struct {
	cause error // errMemory or errTimeout
	peak  uint64
}

func (e *compileLimitError) Error() string {
	return fmt.Sprintf("compiling the module: %v (peak %d bytes)", e.cause, e.peak)
}

func (e *compileLimitError) Unwrap() error { return e.cause }

// report makes res the result of a run whose module could not be
// compiled within its limits l: memory_limit or timeout, never started.
func (e *compileLimitError) report(res *run.Result, l limits.Limits) {
	res.PeakMemory = int64(e.peak)
	if errors.Is(e.cause, errMemory) {
		res.Status = run.StatusMemoryLimit
		res.Reason = fmt.Sprintf("not started: compiling the module took more than the memory limit of %s", l.Memory)
		return
	}
	res.Status = run.StatusTimeout
	res.Reason = fmt.Sprintf("not started: compiling the module took longer than the wall-clock limit of %s", l.Timeout)
}

// LimitError names a limit the wasm backend refuses, and why.
type LimitError struct {
	// Limit is the JSON name of the limit ("cpus").
	Limit string
	// Why says what the backend lacks, and what to do instead.
	Why string
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("limit %s cannot be enforced on the wasm backend: %s", e.Limit, e.Why)
}

// Is makes errors.Is(err, ErrUnsupportedLimit) hold, and so its class.
func (e *LimitError) Is(target error) bool { return errors.Is(ErrUnsupportedLimit, target) }
