package isolate

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/sandboxd/sandboxd/internal/isolate/nsinit"
	"github.com/sandboxd/sandboxd/internal/run"
)

// classify sets the result's status from what the supervisor did, the
// program's wait status and the cgroup's figures, already in res. A limit
// the supervisor acted on wins; then the kernel's OOM kills; then the
// program's own exit. The Reason names the limit with its value.
func classify(res *run.Result, reason killReason, exit *nsinit.ExitStatus, e Exec, ctxErr error) {
	l := e.Limits
	if exit != nil {
		res.ExitCode = exit.Code
		if exit.Signal != 0 {
			res.ExitCode = -1
			res.Signal = exit.Signal
			res.SignalName = unix.SignalName(syscall.Signal(exit.Signal))
		}
	}
	switch reason {
	case killTimeout:
		res.Status = run.StatusTimeout
		res.Reason = fmt.Sprintf("stopped: wall-clock limit of %s reached", l.Timeout)
		return
	case killCPU:
		res.Status = run.StatusCPULimit
		res.Reason = fmt.Sprintf("stopped: CPU time limit of %s reached (used %s)", l.CPUTime, res.CPUTime.Round(1e6))
		return
	case killOutput:
		res.Status = run.StatusOutputLimit
		res.Reason = fmt.Sprintf("stopped: output limit of %s per stream reached", l.Output)
		return
	case killCanceled:
		res.SetCanceled(ctxErr)
		return
	}
	failed := exit == nil || exit.Signal != 0 || exit.Code != 0
	if res.OOMKills > 0 && failed {
		res.Status = run.StatusMemoryLimit
		res.Reason = fmt.Sprintf("stopped: memory limit of %s reached (peak %d bytes, %d OOM kill(s))", l.Memory, res.PeakMemory, res.OOMKills)
		if res.PeakMemory < int64(l.Memory-l.Memory/16) {
			// Far below its own limit: the limit of all sandboxes
			// together (Config.MemoryLimit) was reached.
			res.Reason = fmt.Sprintf("stopped: the memory of all sandboxes together reached this host's limit (the run's own limit of %s was not reached: peak %d bytes, %d OOM kill(s))", l.Memory, res.PeakMemory, res.OOMKills)
		}
		return
	}
	if exit == nil {
		res.Status = run.StatusInternalError
		res.Error = "sandbox init ended without reporting the program's exit"
		res.Reason = res.Error
		return
	}
	switch {
	case exit.Signal == int(syscall.SIGXCPU) || exit.Signal == int(syscall.SIGKILL) && res.CPUTime >= l.CPUTime.Std():
		// The RLIMIT_CPU backstop fired before the cgroup poll did.
		res.Status = run.StatusCPULimit
		res.Reason = fmt.Sprintf("stopped: CPU time limit of %s reached (used %s)", l.CPUTime, res.CPUTime.Round(1e6))
	case exit.Signal == int(syscall.SIGXFSZ):
		res.Status = run.StatusSignaled
		res.Reason = fmt.Sprintf("killed by SIGXFSZ: file size limit of %s reached", l.FileSize)
	case exit.Signal != 0:
		res.Status = run.StatusSignaled
		res.Reason = "killed by " + res.SignalName
	case exit.Code == 0:
		res.Status = run.StatusOK
	default:
		res.Status = run.StatusExited
	}
}
