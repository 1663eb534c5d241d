package executor

import "errors"

var (
	// ErrInvalid: the spec is wrong (no files, a bad file name, a bad env
	// name, an unknown backend). The message says what.
	ErrInvalid = errors.New("invalid run spec")
	// ErrUnavailable: the spec is fine but this host cannot run it (the
	// runtime is not installed).
	ErrUnavailable = errors.New("unavailable")
)
