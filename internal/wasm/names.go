package wasm

import (
	"fmt"
	"path"
	"strings"
)

// reservedDir is the workspace directory the process backend keeps for
// compile output; names under it are refused here too, so a spec valid on
// one backend is valid on the other.
const reservedDir = ".sandboxd"

// workspaceInodes is how many files and directories a workspace of size
// bytes may hold: the process backend's tmpfs inode count.
func workspaceInodes(size int64) int64 { return max(size/(8<<10), 1024) }

// cleanName checks a client-given file name with the process backend's
// rules (isolate.CleanName), restated here so that this package, which
// builds on every OS, does not depend on the Linux backend: a clean
// relative path inside the workspace.
func cleanName(name string) (string, error) {
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("%w: bad file name %q: %s", ErrInvalid, name, why)
	}
	switch {
	case name == "":
		return bad("empty name")
	case len(name) > 4096:
		return bad("longer than 4096 bytes")
	case strings.ContainsAny(name, "\x00\\"):
		return bad("contains a NUL byte or a backslash")
	case strings.HasPrefix(name, "/"):
		return bad("must be relative to the workspace")
	case path.Clean(name) != name:
		return bad("must be a clean path without '.', '..' or empty components")
	case name == "." || name == ".." || strings.HasPrefix(name, "../"):
		return bad("must not leave the workspace")
	case name == reservedDir || strings.HasPrefix(name, reservedDir+"/"):
		return bad("the " + reservedDir + " directory is reserved for the sandbox")
	}
	return name, nil
}
