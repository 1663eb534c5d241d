package wasm

import (
	"errors"
	"fmt"

	"github.com/sandboxd/sandboxd/internal/limits"
)

// Check refuses limits this backend cannot enforce. l is the run's
// complete limits; set is the spec's limits before the defaults were
// merged, so that only what a client asked for explicitly is refused (a
// default is never a reason to refuse a run). See the table in doc.go for
// how each limit is enforced.
func (r *Runner) Check(l, set limits.Limits) error {
	var errs []error
	// One guest is one thread: it never uses more than one core, so a
	// bandwidth of one core or more holds by construction. Less than a
	// core would need a CPU quota this backend does not have.
	if set.CPUs != 0 && set.CPUs < 1 {
		errs = append(errs, &LimitError{Limit: "cpus",
			Why: "a guest runs on one thread with no CPU bandwidth control: cpus below 1 cannot be enforced (use the process backend, or cpu_time)"})
	}
	// Pids: a guest cannot start processes or threads (WASI preview1 has
	// neither), so any pids >= 1 holds.
	if l.Timeout <= 0 || l.Memory <= 0 || l.Output <= 0 || l.Tmpfs <= 0 || l.FileSize <= 0 || l.OpenFiles <= 0 {
		errs = append(errs, fmt.Errorf("%w: limits are incomplete: merge them with the defaults before Check", ErrInvalid))
	}
	return errors.Join(errs...)
}
