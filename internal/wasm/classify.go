package wasm

import (
	"errors"
	"fmt"

	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
)

// trap is a wasm trap and the POSIX signal the same fault raises in a
// native program, so that the two backends report a crash alike: a C
// program's abort() is "unreachable" in wasm and SIGABRT natively, a wild
// pointer "out of bounds memory access" and SIGSEGV.
type trap struct {
	// text is the message of wazero's trap error (internal/wasmruntime),
	// which wazero exports no type or sentinel for. TestTrapTexts pins
	// the ones the test modules raise, so an upgrade that rewords them
	// fails there and not in production.
	text   string
	signal int
	name   string
}

var traps = []trap{
	{"unreachable", 6, "SIGABRT"},
	{"uncaught exception", 6, "SIGABRT"},
	{"out of bounds memory access", 11, "SIGSEGV"},
	{"stack overflow", 11, "SIGSEGV"},
	{"invalid table access", 11, "SIGSEGV"},
	{"indirect call type mismatch", 11, "SIGSEGV"},
	{"null reference", 11, "SIGSEGV"},
	{"integer divide by zero", 8, "SIGFPE"},
	{"integer overflow", 8, "SIGFPE"},
	{"invalid conversion to integer", 8, "SIGFPE"},
	{"unaligned atomic", 7, "SIGBUS"},
	{"expected shared memory", 4, "SIGILL"},
	{"too many waiters", 4, "SIGILL"},
}

// asTrap finds the wasm trap in err: wazero wraps it as "wasm error: %w"
// with a stack trace.
func asTrap(err error) (trap, bool) {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if t, ok := lookupTrap(e.Error()); ok {
			return t, true
		}
	}
	return trap{}, false
}

func lookupTrap(text string) (trap, bool) {
	for _, t := range traps {
		if text == t.text {
			return t, true
		}
	}
	return trap{}, false
}

// classify sets the result's status from how the guest ended and the limit
// the runner acted on (cause, nil if none). As in the process backend, a
// limit the runner acted on wins (timeout, cpu_limit, output_limit); then a
// refused memory grow in a run that failed; then the guest's own exit or
// trap. The Reason names the limit with its value. The error is for an end
// that is not the guest's doing (the sandbox failed).
func classify(res *run.Result, end guestEnd, cause error, l limits.Limits) error {
	switch {
	case errors.Is(cause, errOutput):
		// Overflowing output wins even if the guest exited right after:
		// the run lost output either way.
		res.Status = run.StatusOutputLimit
		res.Reason = fmt.Sprintf("stopped: output limit of %s per stream reached", l.Output)
		return nil
	case errors.Is(cause, errMemory):
		res.Status = run.StatusMemoryLimit
		res.Reason = fmt.Sprintf("stopped: memory limit of %s reached: the worker's memory (linear memory, tables, the runtime's structures for the instance) grew past it (peak %d bytes)", l.Memory, res.PeakMemory)
		return nil
	case errors.Is(cause, errTimeout):
		res.Status = run.StatusTimeout
		res.Reason = fmt.Sprintf("stopped: wall-clock limit of %s reached", l.Timeout)
		return nil
	case errors.Is(cause, errCPU):
		res.Status = run.StatusCPULimit
		res.Reason = fmt.Sprintf("stopped: CPU time limit of %s reached (used %s)", l.CPUTime, res.CPUTime.Round(1e6))
		return nil
	case cause != nil || end.Kind == endClosed:
		res.SetCanceled(cause)
		return nil
	}

	var t trap
	switch end.Kind {
	case endReturned:
		res.ExitCode = 0
	case endExit:
		// As a POSIX exit status: the low 8 bits.
		res.ExitCode = int(end.Code & 0xff)
	case endTrap:
		t, _ = lookupTrap(end.Trap)
		res.ExitCode, res.Signal, res.SignalName = -1, t.signal, t.name
	default:
		// Not the guest's doing: a host function failed, or the module
		// could not be instantiated.
		// end.Err crossed the worker's pipe: bounded again here.
		return fmt.Errorf("run the module: %s", run.Clip(end.Err, run.MaxMessage))
	}
	failed := res.ExitCode != 0
	switch {
	case failed && end.MemRefused:
		res.Status = run.StatusMemoryLimit
		res.Reason = fmt.Sprintf("stopped: memory limit of %s reached (linear memory peak %d bytes)", l.Memory, res.PeakMemory)
	case end.Kind == endTrap:
		res.Status = run.StatusSignaled
		res.Reason = fmt.Sprintf("wasm trap: %s (reported as %s, what the fault raises natively)", run.Clip(end.Trap, run.MaxName), t.name)
	case !failed:
		res.Status = run.StatusOK
	default:
		res.Status = run.StatusExited
	}
	if failed && end.QuotaHit {
		res.Reason = joinReason(res.Reason, fmt.Sprintf("a write failed: workspace limit of %s (files of at most %s) reached", l.Tmpfs, l.FileSize))
	}
	return nil
}

func joinReason(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}
