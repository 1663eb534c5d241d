package nsinit

import "time"

// Arg0 is the argv[0] that marks a process as the init stage.
const Arg0 = "sandboxd-init"

// File descriptors the init stage inherits, besides stdio.
const (
	ConfigFD = 3 // parent -> init: Config as JSON, then EOF
	StatusFD = 4 // init -> parent: Messages as JSON lines
)

// ExitSetupFailed is init's exit code when setup failed; the reason was sent
// as a Message before.
const ExitSetupFailed = 125

// Config is everything the init stage needs to build the sandbox and start
// the program. The parent fills it; init trusts it.
type Config struct {
	// Argv and Env of the program; Argv[0] is an absolute path inside the
	// sandbox or relative to Dir.
	Argv []string `json:"argv"`
	Env  []string `json:"env"`
	// Dir is the program's working directory inside the sandbox.
	Dir string `json:"dir"`
	// UID and GID the program runs as inside the sandbox (never 0).
	UID int `json:"uid"`
	GID int `json:"gid"`
	// Hostname of the sandbox's UTS namespace.
	Hostname string `json:"hostname"`

	// Root is the host path of an empty directory the new root is built on.
	Root string `json:"root"`
	// Workspace is the host path of the run's workspace, bind-mounted
	// read-write at WorkspaceDir.
	Workspace    string `json:"workspace"`
	WorkspaceDir string `json:"workspace_dir"`
	// TmpSize is the size of the /tmp and /dev/shm tmpfs mounts in bytes.
	TmpSize int64 `json:"tmp_size"`
	// TmpInodes caps the inodes of each of them (the parent sizes it by
	// the same rule as the workspace's: internal/workspace.Inodes).
	TmpInodes int64 `json:"tmp_inodes"`
	// Binds are host paths made visible read-only at the same path.
	Binds []Bind `json:"binds"`
	// DevDir is the host directory of the device nodes (Devices) bound
	// into the sandbox's /dev and over masked /proc files; "" is /dev.
	DevDir string `json:"dev_dir,omitempty"`
	// Files are small files written into the new root (e.g. /etc/passwd).
	Files []RootFile `json:"files"`
	// ProcFiles are files the parent generated, shown read-only over the
	// host's in the run's /proc (a meminfo of the run's memory limit).
	ProcFiles []ProcFile `json:"proc_files,omitempty"`

	// Rlimits applied to init and so inherited by the program.
	Rlimits []Rlimit `json:"rlimits"`
	// Seccomp installs SeccompFilter when set; init refuses to go on
	// without one.
	Seccomp bool `json:"seccomp"`
	// SeccompFilter is the compiled filter, the bytes of a sock_filter
	// array in the machine's byte order (internal/isolate/seccomp.Compile):
	// the runner compiles the policy, init only installs it, so the
	// policy and its assembler are not linked into init.
	SeccompFilter []byte `json:"seccomp_filter,omitempty"`
	// ExtraFiles is the number of fds init inherits past StatusFD (from
	// StatusFD+1 on) that the program gets as fd 3, 4, ...: a warm
	// sandbox's control pipe.
	ExtraFiles int `json:"extra_files,omitempty"`
	// Reaper says that init inherits one more fd, past the ExtraFiles:
	// the reaper (internal/isolate, reaper_linux.go), which init executes
	// in its place once the program runs.
	Reaper bool `json:"reaper,omitempty"`
	// Attach are the host paths at which init attaches, in this order and
	// before anything else, the detached mounts it inherits past the
	// reaper (or the ExtraFiles): the run's mounts, which the parent keeps
	// out of the namespace init's was copied from (internal/isolate,
	// mountns_linux.go).
	Attach []string `json:"attach,omitempty"`
	// CgroupTasks is the number of fds init inherits past the Attach
	// mounts, each a cgroup v1 hierarchy's `tasks` file of the run's
	// cgroup, opened by the parent: init writes 0 to each, so that its
	// own thread, and so the program it forks, joins the run's cgroup
	// (cgroup v1; on v2 init is cloned into it). A thread moving itself
	// takes none of the global lock a move by pid takes, whose first
	// taking after a quiet spell waits out an RCU grace period.
	CgroupTasks int `json:"cgroup_tasks,omitempty"`
	// Enter says the run's process enters the sandbox from outside (the
	// fork server, internal/isolate zygote_linux.go): init starts no
	// program (Argv is not used), closes its stdio and executes the
	// reaper with no program's pid, which holds the sandbox, reaping,
	// until it is killed. The ExtraFiles close on that execve: their
	// EOF says the sandbox is ready. The last message is the fork
	// server's, which kills init once the run's process has ended.
	// Needs Reaper.
	Enter bool `json:"enter,omitempty"`
}

// Bind is a host path shown read-only inside the sandbox at the same path.
// A host symlink is recreated as the same symlink, not followed.
type Bind struct {
	Path string `json:"path"`
	// Optional binds whose host path does not exist are skipped.
	Optional bool `json:"optional,omitempty"`
}

// ProcFile shows the host file Source, read-only, at /proc/Path in the
// sandbox. The parent may rewrite Source in place (a warm sandbox taking a
// run's limits); the program sees the new content.
type ProcFile struct {
	Source string `json:"source"`
	Path   string `json:"path"`
}

// RootFile is a file created in the new root before it is made read-only.
type RootFile struct {
	Path    string `json:"path"`
	Content string `json:"content"`
	Mode    uint32 `json:"mode"`
}

// Rlimit is one resource limit, soft and hard set to the same value.
type Rlimit struct {
	Resource int    `json:"resource"`
	Name     string `json:"name"`
	Value    uint64 `json:"value"`
}

// Message is one line init sends to the parent on StatusFD.
type Message struct {
	// Build is init's Build, in the first message (the hello), before it
	// reads its config.
	Build string `json:"build,omitempty"`
	// Pid is the program's pid inside the sandbox, sent once it started.
	Pid int `json:"pid,omitempty"`
	// Setup is how long init took from its start to the program's start,
	// for the phases of the debug log and the benchmark.
	Setup time.Duration `json:"setup_ns,omitempty"`
	// Exit is sent when the program exited.
	Exit *ExitStatus `json:"exit,omitempty"`
	// Error and Op are sent when setup failed; init then exits with
	// ExitSetupFailed.
	Error string `json:"error,omitempty"`
	Op    string `json:"op,omitempty"`
}

// ExitStatus is the program's wait status.
type ExitStatus struct {
	Code   int  `json:"code"`
	Signal int  `json:"signal,omitempty"`
	Core   bool `json:"core,omitempty"`
}
