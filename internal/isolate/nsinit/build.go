package nsinit

import (
	"embed"
	"encoding/hex"
	"hash/fnv"
	"io/fs"
	"runtime"
	"sync"
)

// The init stage's code is this package. A runner may execute an init
// binary of its own build only (cmd/sandboxd-init beside it): one left
// from an older install would build sandboxes by older rules, or misread
// the config. So both sides compute Build from the same thing, this
// package's source as compiled in (embedded), and the Go toolchain that
// compiled it; init sends its Build first thing (the hello on StatusFD),
// and the parent gives the "go" only to an init of its own Build.
//
// The dependencies (golang.org/x/sys) are not part of it: they change the
// system call wrappers, not what init does with them, and go.sum pins them
// for both binaries of one checkout.

//go:embed *.go
var source embed.FS

// BuildArg0 is the argv[0] that makes this binary print its Build and exit
// (doctor's check of an init binary).
const BuildArg0 = "sandboxd-init-build"

var build = sync.OnceValue(func() string {
	h := fnv.New128a()
	h.Write([]byte(runtime.Version()))
	// ReadDir lists in name order: the same source hashes the same.
	entries, _ := fs.ReadDir(source, ".")
	for _, e := range entries {
		b, _ := fs.ReadFile(source, e.Name())
		h.Write([]byte{0})
		h.Write([]byte(e.Name()))
		h.Write([]byte{0})
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))
})

// Build identifies the init stage's code in this binary: two binaries
// with the same Build run the same init.
func Build() string { return build() }
