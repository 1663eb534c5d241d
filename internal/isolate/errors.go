package isolate

import "github.com/sandboxd/sandboxd/internal/errdefs"

// ErrUnsupported: this host cannot run the process backend (not Linux, not
// root, no user namespaces, no cgroup hierarchy). The message says which.
var ErrUnsupported = errdefs.New(errdefs.ErrUnavailable, "process backend unsupported on this host")

// ErrInvalidConfig: a Config field is malformed; the message says which.
var ErrInvalidConfig = errdefs.New(errdefs.ErrInvalidArgument, "invalid process backend configuration")
