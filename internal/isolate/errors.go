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

// ErrNotSession: a session method was called on a run's Process.
var ErrNotSession = errors.New("not a session process")

// ErrFileNotFound: a client-named workspace entry does not exist.
var ErrFileNotFound = errors.New("file not found")

// ErrNotRegular: a client-named path is, or passes through, an entry of the
// wrong type: a symlink (never followed), a fifo, socket or device, a
// directory where a file is needed, or a file where a directory is needed.
var ErrNotRegular = errors.New("wrong file type")

// ErrFileTooLarge: an upload is longer than its cap.
var ErrFileTooLarge = errors.New("file too large")

// ErrWorkspaceFull: the workspace tmpfs has no space or inodes left.
var ErrWorkspaceFull = errors.New("workspace full")

// ErrDirNotEmpty: a directory to remove still has entries.
var ErrDirNotEmpty = errors.New("directory not empty")
