package cli

import (
	"testing"

	"github.com/sandboxd/sandboxd/internal/run"
)

// TestExitCodes: every status has its documented exit code, a canceled
// run's its own (not a sandbox failure's), for runs and cells alike.
func TestExitCodes(t *testing.T) {
	for _, c := range []struct {
		res       run.Result
		code, cel int
	}{
		{run.Result{Status: run.StatusOK}, 0, 0},
		{run.Result{Status: run.StatusExited, ExitCode: 3}, 3, ExitSandboxError},
		{run.Result{Status: run.StatusSignaled, Signal: 11}, 128 + 11, ExitSandboxError},
		{run.Result{Status: run.StatusTimeout}, ExitTimeout, ExitTimeout},
		{run.Result{Status: run.StatusCPULimit}, ExitCPULimit, ExitCPULimit},
		{run.Result{Status: run.StatusMemoryLimit}, ExitMemoryLimit, ExitMemoryLimit},
		{run.Result{Status: run.StatusOutputLimit}, ExitOutputLimit, ExitOutputLimit},
		{run.Result{Status: run.StatusInternalError}, ExitSandboxError, ExitSandboxError},
		{run.Result{Status: run.StatusCanceled}, ExitCanceled, ExitCanceled},
		{run.Result{Status: run.StatusError}, ExitSandboxError, 1},
	} {
		if got := ExitCode(&c.res); got != c.code {
			t.Errorf("run %s: exit %d, want %d", c.res.Status, got, c.code)
		}
		if got := CellExitCode(&run.CellResult{Status: c.res.Status}); got != c.cel {
			t.Errorf("cell %s: exit %d, want %d", c.res.Status, got, c.cel)
		}
	}
}
