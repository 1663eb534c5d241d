package workspace

import (
	"fmt"
	"path"
	"strings"

	"github.com/sandboxd/sandboxd/internal/run"
)

// CleanName checks a client-given workspace path: a clean relative path
// ("data/x.csv") with no "..", no "." or empty components, no NUL and no
// backslash. Anything else is refused, never rewritten into something the
// client did not say.
func CleanName(name string) (string, error) {
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("%w: %s: %s", ErrBadFileName, run.Quote(name, run.MaxName), why)
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
	case name == ReservedDir || strings.HasPrefix(name, ReservedDir+"/"):
		return bad("the " + ReservedDir + " directory is reserved for the sandbox")
	}
	return name, nil
}

// CheckFiles checks a request's input files: each name clean (CleanName)
// and none given twice.
func CheckFiles(files []run.File) error {
	seen := map[string]bool{}
	for _, f := range files {
		if _, err := CleanName(f.Name); err != nil {
			return err
		}
		if seen[f.Name] {
			return fmt.Errorf("%w: file %s given twice", ErrBadFileName, run.Quote(f.Name, run.MaxName))
		}
		seen[f.Name] = true
	}
	return nil
}
