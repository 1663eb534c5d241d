package executor

import "github.com/sandboxd/sandboxd/internal/errdefs"

var (
	// ErrInvalid: the spec is wrong (no files, a bad file name, a bad env
	// name, an unknown backend). The message says what.
	ErrInvalid = errdefs.New(errdefs.ErrInvalidArgument, "invalid run spec")
	// ErrUnavailable: the spec is fine but this host cannot run it (the
	// runtime is not installed, the backend cannot run here).
	ErrUnavailable = errdefs.New(errdefs.ErrUnavailable, "unavailable")
)
