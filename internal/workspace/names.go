package workspace

import (
	"fmt"
	"path"
	"strings"

	"github.com/sandboxd/sandboxd/internal/run"
)

// The bounds of a client-given workspace path. A name within them costs
// its placement a few syscalls per component; without them one 4 KiB name
// 2000 directories deep cost seconds of daemon CPU. The depth is the one
// listings and the collection of produced files descend to.
const (
	MaxNameBytes      = 4096 // PATH_MAX
	MaxComponentBytes = 255  // NAME_MAX
	MaxDepth          = 32   // directories above the file
)

func longComponent(name string) bool {
	for c := range strings.SplitSeq(name, "/") {
		if len(c) > MaxComponentBytes {
			return true
		}
	}
	return false
}

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
	case len(name) > MaxNameBytes:
		return bad(fmt.Sprintf("longer than %d bytes", MaxNameBytes))
	case strings.Count(name, "/") > MaxDepth:
		return bad(fmt.Sprintf("deeper than %d directories", MaxDepth))
	case longComponent(name):
		return bad(fmt.Sprintf("has a component longer than %d bytes", MaxComponentBytes))
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
