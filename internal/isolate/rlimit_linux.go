package isolate

import (
	"fmt"
	"math"
	"os"

	"golang.org/x/sys/unix"

	"github.com/sandboxd/sandboxd/internal/isolate/nsinit"
	"github.com/sandboxd/sandboxd/internal/limits"
)

// stackLimit is the sandbox's stack rlimit: the usual 8 MiB, but as a hard
// limit too.
const stackLimit = 8 << 20

// rlimits maps a run's limits onto the rlimits of its processes. RLIMIT_CPU
// is a per-process backstop one second past the run's CPU budget; the
// budget itself is enforced for the run as a whole from its cgroup.
func rlimits(l limits.Limits) []nsinit.Rlimit {
	cpuSec := uint64(math.Ceil(l.CPUTime.Std().Seconds())) + 1
	return append([]nsinit.Rlimit{
		{Resource: unix.RLIMIT_CPU, Name: "cpu", Value: cpuSec},
		{Resource: unix.RLIMIT_FSIZE, Name: "fsize", Value: uint64(l.FileSize)},
		{Resource: unix.RLIMIT_NOFILE, Name: "nofile", Value: uint64(l.OpenFiles)},
		{Resource: unix.RLIMIT_CORE, Name: "core", Value: 0},
		{Resource: unix.RLIMIT_STACK, Name: "stack", Value: stackLimit},
	}, perUserRlimits...)
}

// perUserRlimits bound, per run, the kernel resources that are charged to
// a user and checked against the caller's rlimit: queued signals, POSIX
// message queue bytes, locked memory. The run's own host uid (uids_linux.go)
// keeps them off host root's and other runs' counts; these keep one run
// from holding the kernel memory behind them by the host's defaults (tens
// of thousands of queued signals on a large host). Since Linux 5.14 the
// counts are per user namespace too, so each run's are its own.
var perUserRlimits = []nsinit.Rlimit{
	// Plenty for real-time signal users; each pending signal is a kernel
	// allocation.
	{Resource: unix.RLIMIT_SIGPENDING, Name: "sigpending", Value: sigpendingLimit},
	// The kernel's default: ten queues of the default size.
	{Resource: unix.RLIMIT_MSGQUEUE, Name: "msgqueue", Value: 819200},
	// systemd's default since v253; mlock'ed pages cannot be reclaimed.
	{Resource: unix.RLIMIT_MEMLOCK, Name: "memlock", Value: memlockLimit},
}

const (
	sigpendingLimit = 1024
	memlockLimit    = 8 << 20
)

// allowPerUserRlimits raises this process's hard limits to at least
// perUserRlimits. A sandbox's init sets its rlimits as an unprivileged uid
// (no CAP_SYS_RESOURCE on the host), so it can lower what it inherits but
// not raise it: a host whose default hard limit is lower (RLIMIT_MEMLOCK
// was 64 KiB before systemd 253) would fail every run. Soft limits stay.
func allowPerUserRlimits() error {
	for _, rl := range perUserRlimits {
		var cur unix.Rlimit
		if err := unix.Getrlimit(rl.Resource, &cur); err != nil {
			return fmt.Errorf("read rlimit %s: %w", rl.Name, os.NewSyscallError("getrlimit", err))
		}
		if cur.Max == unix.RLIM_INFINITY || cur.Max >= rl.Value {
			continue
		}
		cur.Max = rl.Value
		if err := unix.Setrlimit(rl.Resource, &cur); err != nil {
			return fmt.Errorf("raise the hard rlimit %s to %d for the sandboxes: %w", rl.Name, rl.Value, os.NewSyscallError("setrlimit", err))
		}
	}
	return nil
}
