package workspace

import "github.com/sandboxd/sandboxd/internal/errdefs"

// The errors of workspace names and file operations, on either backend.
var (
	// ErrBadFileName: a client-given file name is not a plain relative
	// path inside the workspace.
	ErrBadFileName = errdefs.New(errdefs.ErrInvalidArgument, "bad file name")
	// ErrFileNotFound: a client-named workspace entry does not exist.
	ErrFileNotFound = errdefs.New(errdefs.ErrNotFound, "file not found")
	// ErrNotRegular: a client-named path is, or passes through, an entry
	// of the wrong type: a symlink (never followed), a fifo, socket or
	// device, a directory where a file is needed, or a file where a
	// directory is needed.
	ErrNotRegular = errdefs.New(errdefs.ErrInvalidArgument, "wrong file type")
	// ErrFileTooLarge: an upload is longer than its cap.
	ErrFileTooLarge = errdefs.New(errdefs.ErrTooLarge, "file too large")
	// ErrFull: the workspace has no space or inodes left.
	ErrFull = errdefs.New(errdefs.ErrNoSpace, "workspace full")
	// ErrDirNotEmpty: a directory to remove still has entries.
	ErrDirNotEmpty = errdefs.New(errdefs.ErrConflict, "directory not empty")
)
