package run

import (
	"errors"
	"time"

	"github.com/sandboxd/sandboxd/internal/spool"
)

// Result says what a run did and why it stopped, with the numbers that prove
// it. Every backend fills the same fields. Its JSON form is in json.go.
type Result struct {
	// ID identifies the run in logs and in the host's leftovers.
	ID string
	// Status says why the run stopped.
	Status Status
	// Reason is one human sentence behind Status when a limit or an internal
	// error stopped the run ("memory limit of 256MiB reached").
	Reason string
	// ExitCode is the program's exit code; -1 when it was killed by a signal.
	ExitCode int
	// Signal is the number of the signal that killed the program, or 0.
	Signal int
	// SignalName is the signal's name ("SIGSEGV"), or empty.
	SignalName string

	Stdout          []byte
	Stderr          []byte
	StdoutTruncated bool
	StderrTruncated bool
	// StdoutFile and StderrFile, when set, hold the stream instead of
	// Stdout and Stderr (empty then): a run whose Stream had a Spool and
	// whose output passed output.SpoolAt bytes. Close closes them.
	StdoutFile *spool.File
	StderrFile *spool.File

	// WallTime is from the start of the program to the end of the run.
	WallTime time.Duration
	// CPUTime is the CPU (user+system) of every process of the run, read from
	// its cgroup.
	CPUTime time.Duration
	// PeakMemory is the high-water mark of the run's memory cgroup in bytes.
	PeakMemory int64
	// OOMKills counts processes of the run the kernel's OOM killer killed.
	OOMKills int

	// Files are the files the run created or changed in its workspace.
	Files []OutputFile
	// FilesTruncated is set when files were left out for the size or count caps.
	FilesTruncated bool

	// Compile is the result of the compile step, for compiled languages.
	Compile *Result

	// Runtime and Version name what ran.
	Runtime string
	Version string
	// Isolation records what confinement was actually applied.
	Isolation Isolation
	// Error holds the internal error when Status is internal_error.
	Error string
}

// Close closes the spool files the Result and its compile step hold, if
// any, which frees their disk: the holder of a Result whose run had a
// Spool calls it once the answer is written or abandoned. It is safe on a
// nil Result and more than once.
func (r *Result) Close() error {
	var errs []error
	for ; r != nil; r = r.Compile {
		errs = append(errs, r.StdoutFile.Close(), r.StderrFile.Close())
	}
	return errors.Join(errs...)
}

// OutputFile is a regular file found in the workspace after the run.
type OutputFile struct {
	Name    string
	Size    int64
	Mode    uint32
	Content []byte
}

// Isolation records the confinement a run actually got, so that nothing is
// silently weaker than asked.
type Isolation struct {
	Backend Backend `json:"backend"`
	// Namespaces lists the Linux namespaces the run was placed in.
	Namespaces []string `json:"namespaces,omitempty"`
	// Cgroup is "v1", "v2" or "" when the run had no cgroup.
	Cgroup string `json:"cgroup,omitempty"`
	// Seccomp is set when the syscall filter was installed.
	Seccomp bool `json:"seccomp"`
	// NoNewPrivs is set when PR_SET_NO_NEW_PRIVS was set.
	NoNewPrivs bool `json:"no_new_privs"`
	// Rootfs says how the file system was built ("pivot_root").
	Rootfs string `json:"rootfs,omitempty"`
	// UID is the user id the program ran as inside the sandbox.
	UID int `json:"uid"`
	// Network is "none" (loopback only) or what else the run could reach.
	Network string `json:"network,omitempty"`
	// Warm is set when the run took a sandbox started ahead of it (same
	// confinement; the interpreter was already running).
	Warm bool `json:"warm,omitempty"`
	// Zygote is set when a warm run's process was forked by the fork
	// server into its sandbox (same confinement; the interpreter's
	// start-up was the server's).
	Zygote bool `json:"zygote,omitempty"`
	// Init is the process backend's init stage: "sandboxd-init" (the
	// small init binary) or "reexec" (the sandboxd or sandboxctl binary
	// re-executed). The same code and confinement either way.
	Init string `json:"init,omitempty"`
}
