package cli

import (
	"github.com/sandboxd/sandboxd/internal/run"
)

// Exit codes of `sandboxctl run` when the program's own code cannot be
// passed on. A program that exits passes its code through; a program killed
// by a signal gives 128+signal, as shells do.
const (
	// ExitSandboxError: sandboxctl could not run the program (bad flags, an
	// unknown runtime, a bad limit, no root, a sandbox failure).
	ExitSandboxError = 125
	// ExitTimeout: the wall-clock limit stopped the run (as timeout(1)).
	ExitTimeout = 124
	// ExitCPULimit: the CPU-time limit stopped the run.
	ExitCPULimit = 123
	// ExitMemoryLimit: the memory limit stopped the run.
	ExitMemoryLimit = 122
	// ExitOutputLimit: the output limit stopped the run.
	ExitOutputLimit = 121
	// ExitCanceled: the run was canceled before it ended (status
	// canceled): the daemon shut down past its grace period, or the
	// request was cut. An interrupted sandboxctl exits 128+signal
	// instead, as the program would have.
	ExitCanceled = 120
)

// ExitCode maps a result onto sandboxctl's exit code.
func ExitCode(res *run.Result) int {
	switch res.Status {
	case run.StatusOK:
		return 0
	case run.StatusExited:
		return res.ExitCode
	case run.StatusSignaled:
		return 128 + res.Signal
	}
	return limitExitCode(res.Status)
}

// limitExitCode is the exit code of a limit's status or of a canceled
// run, else ExitSandboxError.
func limitExitCode(s run.Status) int {
	switch s {
	case run.StatusTimeout:
		return ExitTimeout
	case run.StatusCPULimit:
		return ExitCPULimit
	case run.StatusMemoryLimit:
		return ExitMemoryLimit
	case run.StatusOutputLimit:
		return ExitOutputLimit
	case run.StatusCanceled:
		return ExitCanceled
	}
	return ExitSandboxError
}

// CellExitCode maps a session cell's result onto sandboxctl's exit code:
// 0 ok, 1 an exception, the codes of `sandboxctl run` for the limits and
// a canceled cell, and ExitSandboxError when the kernel itself ended (the session is dead) or
// failed.
func CellExitCode(res *run.CellResult) int {
	switch res.Status {
	case run.StatusOK:
		return 0
	case run.StatusError:
		return 1
	}
	return limitExitCode(res.Status)
}
