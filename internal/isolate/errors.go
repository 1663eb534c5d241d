package isolate

import "errors"

var (
	// ErrUnsupported: this host cannot run the process backend (not Linux,
	// not root, no user namespaces, no cgroup hierarchy). The message says
	// which.
	ErrUnsupported = errors.New("process backend unsupported on this host")
)

// ErrBadFileName: a client-given file name is not a plain relative path
// inside the workspace.
var ErrBadFileName = errors.New("bad file name")
