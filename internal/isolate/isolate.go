package isolate

import (
	"fmt"
	"log/slog"
	"path"
	"strings"

	"github.com/sandboxd/sandboxd/internal/isolate/nsinit"
	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/workspace"
)

// SandboxUID is the uid (and gid) programs run as inside the sandbox.
const SandboxUID = 1000

// Config configures a Runner. The zero value of each field picks a default.
type Config struct {
	// StateDir holds the run directories (default /run/sandboxd).
	StateDir string
	// CgroupParent is the cgroup under which runs get theirs
	// (default "sandboxd").
	CgroupParent string
	// MemoryLimit caps the memory of every sandbox under CgroupParent
	// together: the parent's limit, set by New (no swap). A daemon sets it
	// to its memory budget, as a second line behind the admission of runs
	// and sessions against that budget. Zero leaves the parent's limit as
	// it is.
	MemoryLimit limits.Bytes
	// HostUID and HostGID start the pool of host ids the sandboxes get,
	// IDSlots slots of IDsPerSandbox ids each (uids_linux.go): a live
	// sandbox's uid/gid 0 maps to its slot's first id, uid SandboxUID to
	// that plus SandboxUID. The pool must not be used by anything else on
	// the host (defaults DefaultHostUID and DefaultIDSlots).
	HostUID, HostGID int
	IDSlots          int
	// IDLockDir holds a lock file per id slot in use (default
	// DefaultIDLockDir). It is per host, whatever StateDir is: every
	// runner on the host must share it.
	IDLockDir string
	// Binds are the host paths shown read-only in every sandbox
	// (default DefaultBinds).
	Binds []nsinit.Bind
	// Collect caps the produced files returned (defaults: 64 files, 8 MiB
	// each, 32 MiB in all).
	Collect workspace.CollectLimits
	// Seccomp can be turned off only for diagnosis; results then say so.
	NoSeccomp bool
	// Init is the init stage's binary: InitAuto (the zero value: the
	// environment's InitEnv if set, else InitBinaryName beside this
	// executable when it passes the checks of initbin_linux.go, else
	// this binary re-executed), InitReexec, or the absolute path of an
	// init binary (checked the same way, with the same fallback).
	Init string
	// Spawner clones the sandboxes' inits from a small process started
	// from the init binary (spawner_linux.go) instead of from this one:
	// for a long-lived parent whose memory grows with its sessions (the
	// daemon). A one-shot parent (sandboxctl) would pay the spawner's
	// start for one clone. Without an init binary, inits are cloned from
	// here.
	Spawner bool
	Logger  *slog.Logger
}

// InitBinaryName is the init binary looked for beside this executable.
const InitBinaryName = "sandboxd-init"

// Config.Init values other than a path.
const (
	// InitAuto (the zero value) uses InitBinaryName beside this
	// executable when it passes the checks, else re-executes this binary.
	InitAuto = ""
	// InitReexec always re-executes this binary.
	InitReexec = "reexec"
)

// InitEnv, when Config.Init is InitAuto, overrides it (a diagnosis or a
// benchmark forcing the fallback: SANDBOXD_INIT=reexec).
const InitEnv = "SANDBOXD_INIT"

// CheckCgroupParent refuses a cgroup parent (Config.CgroupParent) that is
// not a clean relative path, which could lead out of the hierarchies:
// "sandboxd" and "system.slice/sandboxd" are fine, "../x" and "/x" not.
func CheckCgroupParent(p string) error {
	if p != path.Clean(p) || path.IsAbs(p) || p == "." || p == ".." || strings.HasPrefix(p, "../") {
		return fmt.Errorf("%w: cgroup parent %q: want a clean relative path such as \"sandboxd\"", ErrInvalidConfig, p)
	}
	return nil
}

// DefaultBinds are the host directories the runtimes need: the system
// directories, and the few files of /etc that programs read. The rest of
// /etc (shadow, ssh keys, the host's config and credentials) is not there.
var DefaultBinds = []nsinit.Bind{
	{Path: "/usr"},
	{Path: "/bin", Optional: true},
	{Path: "/sbin", Optional: true},
	{Path: "/lib", Optional: true},
	{Path: "/lib32", Optional: true},
	{Path: "/lib64", Optional: true},
	{Path: "/libx32", Optional: true},
	{Path: "/etc/alternatives", Optional: true},
	{Path: "/etc/ld.so.cache", Optional: true},
	{Path: "/etc/ld.so.conf", Optional: true},
	{Path: "/etc/ld.so.conf.d", Optional: true},
	{Path: "/etc/localtime", Optional: true},
	{Path: "/etc/ssl", Optional: true},
	{Path: "/etc/ca-certificates", Optional: true},
	{Path: "/etc/mime.types", Optional: true},
	{Path: "/etc/python3", Optional: true},
	{Path: "/etc/python3.11", Optional: true},
	{Path: "/etc/python3.12", Optional: true},
	{Path: "/etc/python3.13", Optional: true},
	{Path: "/etc/matplotlibrc", Optional: true},
	{Path: "/etc/fonts", Optional: true},
}

// Exec is one program execution inside a Workspace.
type Exec struct {
	// Argv is run inside the sandbox, never through a shell; Argv[0] is an
	// absolute path or relative to the workspace.
	Argv []string
	// Env is the program's whole environment.
	Env []string
	// Stream is the program's live I/O: Stdin is copied to its stdin (nil:
	// empty); Stdout and Stderr, if set, receive the output as it arrives
	// (up to the output cap). The result holds the output either way.
	run.Stream
	// Limits must be complete (merged with defaults and validated).
	Limits limits.Limits
	// Tenant is who the sandbox works for (a token's owner, a client's
	// address; "" is a tenant like any other): the busy sandboxes of one
	// tenant share one default CPU weight (cpushares_linux.go).
	Tenant string
}

// Activation is what a HeldProcess gets when it is put to use.
type Activation struct {
	// Limits replace the ones the HeldProcess was started with: the
	// cgroup's and the program's rlimits are updated. Tmpfs cannot change.
	Limits limits.Limits
	// Stream is the run's live I/O, as Exec's.
	run.Stream
	// Control is written to the program's control pipe, which is then
	// closed.
	Control []byte
	// Tenant is who the run is for, as Exec's.
	Tenant string
}

// Output is one execution's output in a session (SessionProcess.Cut), as a
// run's.
type Output struct {
	Stdout, Stderr                   []byte
	StdoutTruncated, StderrTruncated bool
}
