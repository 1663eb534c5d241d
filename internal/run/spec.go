package run

import (
	"github.com/sandboxd/sandboxd/internal/limits"
)

// Backend names a backend. The zero value lets the executor choose.
type Backend string

const (
	BackendAuto    Backend = ""
	BackendProcess Backend = "process"
	BackendWasm    Backend = "wasm"
)

// File is one file placed in the run's workspace before the run starts.
type File struct {
	// Name is a relative path inside the workspace ("main.py", "data/x.csv").
	// Absolute paths, ".." and empty components are refused.
	Name string
	// Content is the file's bytes.
	Content []byte
	// Mode is the permission bits; zero means 0644.
	Mode uint32
}

// Spec says what to run. It is backend-neutral: both backends take it as is.
type Spec struct {
	// Runtime names a language from the runtimes registry ("python", "c").
	// Empty means: pick by the entry file's extension.
	Runtime string `json:"runtime,omitempty"`
	// Files go into the workspace. Entry names the one to run.
	Files []File `json:"files"`
	// Entry is the Name of the file to run; empty means the first file.
	Entry string `json:"entry,omitempty"`
	// Args are passed to the program after the entry file. Never parsed by a
	// shell.
	Args []string `json:"args,omitempty"`
	// Stdin is fed to the program; nil means an empty stdin.
	Stdin []byte `json:"stdin,omitempty"`
	// Env adds KEY=VALUE pairs to the sandbox's clean environment.
	Env map[string]string `json:"env,omitempty"`
	// Limits of the run; unset fields take the defaults.
	Limits limits.Limits `json:"limits"`
	// CompileLimits apply to the compile step of compiled languages; unset
	// fields take the defaults.
	CompileLimits limits.Limits `json:"compile_limits"`
	// Backend picks a backend; empty lets the executor choose.
	Backend Backend `json:"backend,omitempty"`
}
