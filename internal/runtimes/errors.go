package runtimes

import "errors"

var (
	// ErrUnknownRuntime is wrapped by Lookup and ForFile when no runtime
	// matches the name or file asked for.
	ErrUnknownRuntime = errors.New("unknown runtime")
	// ErrInvalidRuntime is wrapped by New, LoadFile and Runtime.Validate when
	// a runtime description is malformed or clashes with another one.
	ErrInvalidRuntime = errors.New("invalid runtime")
	// ErrUnavailable is wrapped by Version when the runtime's Binary is not
	// installed on this host.
	ErrUnavailable = errors.New("runtime not installed")
)
