package nsinit

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io"
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

// build hashes with SHA-256, which Go computes with the CPU's SHA
// extensions where it has them: both the parent and every init compute
// it, init on the way to its hello, and FNV-128a took 0.3 ms there for
// the 60 KiB of source. The files are streamed into the hash, not copied
// out of the binary first.
var build = sync.OnceValue(func() string {
	h := sha256.New()
	h.Write([]byte(runtime.Version()))
	// ReadDir lists in name order: the same source hashes the same.
	entries, _ := fs.ReadDir(source, ".")
	buf := make([]byte, 8<<10)
	for _, e := range entries {
		h.Write([]byte{0})
		h.Write([]byte(e.Name()))
		h.Write([]byte{0})
		if f, err := source.Open(e.Name()); err == nil {
			_, _ = io.CopyBuffer(h, f, buf)
			f.Close()
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
})

// Build identifies the init stage's code in this binary: two binaries
// with the same Build run the same init.
func Build() string { return build() }
