package isolate

import "errors"

var (
	// ErrUnsupported: this host cannot run the process backend (not Linux,
	// not root, no user namespaces, no cgroup hierarchy). The message says
	// which.
	ErrUnsupported = errors.New("process backend unsupported on this host")
)

// ErrNotSession: a session method was called on a run's Process.
var ErrNotSession = errors.New("not a session process")
