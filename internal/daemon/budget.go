package daemon

import (
	"fmt"
	"log/slog"

	"github.com/sandboxd/sandboxd/internal/isolate"
	"github.com/sandboxd/sandboxd/internal/limits"
)

// hostMemory is what the host and the daemon's cgroup can give (a
// variable for the tests).
var hostMemory = isolate.HostMemory

// budgetReserve is what the default memory budget leaves to the daemon
// itself and the rest of the host: an eighth of what they can give, at
// most 1GiB (RATIONALE.md, "The memory budget").
func budgetReserve(host limits.Bytes) limits.Bytes { return min(host/8, limits.GiB) }

// resolveBudget settles cfg's memory budget before the executor is made:
// the operator's, or what the host and the daemon's cgroup can give less
// the reserve. It limits the sandboxes' cgroup parent to it, lowers the
// ceiling on a run's memory to it (a run above it could never be
// admitted) and refuses a default memory limit above it (no run could
// start).
func resolveBudget(cfg *Config, log *slog.Logger) (limits.Bytes, error) {
	budget := cfg.MemoryBudget
	host, from, err := hostMemory()
	switch {
	case budget == 0 && err != nil:
		return 0, fmt.Errorf("find the memory this host can give (or set --memory-budget): %w", err)
	case budget == 0:
		budget = host - budgetReserve(host)
		log.Info("memory budget", "budget", budget, "host", host, "from", from, "reserve", budgetReserve(host))
	case err == nil && budget > host:
		log.Warn("the memory budget is more than this host can give: sandboxes may overcommit it", "budget", budget, "host", host, "from", from)
	}
	ceiling := cfg.Executor.Ceiling.Merge(limits.DefaultCeiling())
	defaults := cfg.Executor.Defaults.Merge(limits.Defaults())
	if defaults.Memory > budget {
		return 0, fmt.Errorf("the default memory limit of a run (%s) is more than the memory budget (%s): no run could start; lower --default-memory or raise --memory-budget", defaults.Memory, budget)
	}
	if ceiling.Memory > budget {
		log.Warn("lowering the ceiling on a run's memory to the memory budget", "max_memory", ceiling.Memory, "budget", budget)
		ceiling.Memory = budget
	}
	cfg.Executor.Ceiling, cfg.Executor.Defaults = ceiling, defaults
	cfg.Executor.Isolate.MemoryLimit = budget
	return budget, nil
}
