package run

import (
	"encoding/json"

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

// Text is bytes that JSON carries as a string, as the API takes a run's
// stdin: text.
type Text []byte

// MarshalJSON writes t as a JSON string (bytes that are not UTF-8 become
// U+FFFD, as encoding/json does for any string).
func (t Text) MarshalJSON() ([]byte, error) { return json.Marshal(string(t)) }

// UnmarshalJSON reads a JSON string; "" leaves t nil.
func (t *Text) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	if s != "" {
		*t = Text(s)
	}
	return nil
}

// Spec says what to run. It is backend-neutral: both backends take it as
// is. Its JSON form is the body of POST /v1/runs (wire.RunRequest adds the
// short form's code to it).
type Spec struct {
	// Runtime names a language from the runtimes registry ("python", "c").
	// Empty means: pick by the entry file's extension.
	Runtime string `json:"runtime,omitempty"`
	// Files go into the workspace. Entry names the one to run.
	Files []File `json:"files"`
	// Entry is the Name of the file to run; empty means the first file.
	Entry string `json:"entrypoint,omitempty"`
	// Args are passed to the program after the entry file. Never parsed by a
	// shell.
	Args []string `json:"args,omitempty"`
	// Stdin is fed to the program; nil means an empty stdin.
	Stdin Text `json:"stdin,omitempty"`
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
