package runtimes

import "github.com/sandboxd/sandboxd/internal/errdefs"

var (
	// ErrUnknownRuntime is wrapped by Lookup and ForFile when no runtime
	// matches the name or file asked for.
	ErrUnknownRuntime = errdefs.New(errdefs.ErrInvalidArgument, "unknown runtime")
	// ErrInvalidRuntime is wrapped by New, LoadFile and Runtime.Validate when
	// a runtime description is malformed or clashes with another one.
	ErrInvalidRuntime = errdefs.New(errdefs.ErrInvalidArgument, "invalid runtime")
	// ErrUnavailable is wrapped by Version when the runtime's Binary is not
	// installed on this host.
	ErrUnavailable = errdefs.New(errdefs.ErrUnavailable, "runtime not installed")
)
