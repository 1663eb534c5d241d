package wasm

import (
	"errors"
	"fmt"

	"github.com/sandboxd/sandboxd/internal/errdefs"
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
