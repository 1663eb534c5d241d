package isolate

import (
	"math"

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
	return []nsinit.Rlimit{
		{Resource: unix.RLIMIT_CPU, Name: "cpu", Value: cpuSec},
		{Resource: unix.RLIMIT_FSIZE, Name: "fsize", Value: uint64(l.FileSize)},
		{Resource: unix.RLIMIT_NOFILE, Name: "nofile", Value: uint64(l.OpenFiles)},
		{Resource: unix.RLIMIT_CORE, Name: "core", Value: 0},
		{Resource: unix.RLIMIT_STACK, Name: "stack", Value: stackLimit},
	}
}
