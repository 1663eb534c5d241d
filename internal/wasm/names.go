package wasm

import (
	"fmt"

	"github.com/sandboxd/sandboxd/internal/isolate"
	"github.com/sandboxd/sandboxd/internal/isolate/nsinit"
)

// workspaceInodes is how many files and directories a workspace of size
// bytes may hold: the process backend's tmpfs inode count.
func workspaceInodes(size int64) int64 { return nsinit.TmpfsInodes(size) }

// cleanName checks a client-given file name with the process backend's
// rules, so a spec valid on one backend is valid on the other.
func cleanName(name string) (string, error) {
	n, err := isolate.CleanName(name)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return n, nil
}
