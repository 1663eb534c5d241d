package run

import (
	"encoding/json"
	"fmt"
)

// Status says why a run stopped. It is one closed set used by every backend
// and every front end; a limit hit is never reported as a plain crash.
type Status string

const (
	// StatusOK: the program exited with code 0.
	StatusOK Status = "ok"
	// StatusExited: the program exited with a non-zero code.
	StatusExited Status = "exited"
	// StatusSignaled: the program was killed by a signal that no limit sent.
	StatusSignaled Status = "signaled"
	// StatusTimeout: the wall-clock deadline passed and the run was killed.
	StatusTimeout Status = "timeout"
	// StatusCPULimit: the run used its CPU-time budget and was killed.
	StatusCPULimit Status = "cpu_limit"
	// StatusMemoryLimit: the memory cgroup (or the wasm page cap) was hit and
	// the kernel's OOM killer (or the runtime) stopped the run.
	StatusMemoryLimit Status = "memory_limit"
	// StatusOutputLimit: stdout or stderr went past its cap and the run was
	// killed; the first bytes up to the cap are kept.
	StatusOutputLimit Status = "output_limit"
	// StatusInternalError: the sandbox itself failed; the program may not
	// have run at all. Result.Error says what failed.
	StatusInternalError Status = "internal_error"
	// StatusCanceled: the run's caller went away (a client that
	// disconnected, an interrupted sandboxctl, a daemon shutting down past
	// its grace period) before it ended, whatever phase it was in: waiting
	// for a slot, having its files placed, its sandbox built, or running.
	// The program may not have run at all; whatever of it ran was killed.
	// Not a failure of the sandbox, nor a limit of the run.
	StatusCanceled Status = "canceled"
	// StatusError: a session's cell raised an exception (a run never has
	// it); the error and its traceback are in the cell's result, and the
	// session goes on.
	StatusError Status = "error"
)

// Statuses lists every Status, in a stable order for documentation and tests.
var Statuses = []Status{
	StatusOK, StatusExited, StatusSignaled, StatusTimeout, StatusCPULimit,
	StatusMemoryLimit, StatusOutputLimit, StatusInternalError, StatusCanceled, StatusError,
}

// Valid reports whether s is one of Statuses.
func (s Status) Valid() bool {
	for _, v := range Statuses {
		if s == v {
			return true
		}
	}
	return false
}

// LimitHit reports whether s means a limit of the run stopped it.
func (s Status) LimitHit() bool {
	switch s {
	case StatusTimeout, StatusCPULimit, StatusMemoryLimit, StatusOutputLimit:
		return true
	}
	return false
}

// UnmarshalJSON refuses a status outside the closed set, so a client (or a
// remote daemon) can never smuggle in a status that front ends do not know.
func (s *Status) UnmarshalJSON(b []byte) error {
	var v string
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	if !Status(v).Valid() {
		return fmt.Errorf("unknown run status %q", v)
	}
	*s = Status(v)
	return nil
}
