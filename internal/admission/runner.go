package admission

import (
	"context"
	"time"

	"github.com/sandboxd/sandboxd/internal/run"
)

// Runner admits every run of next through a Gate: a run waits for a slot
// (or fails at once with ErrQueueFull) and holds it until its result is
// in. With a Budget, a run that has its slot also reserves its memory
// limit until its result is in, or fails at once with a *BudgetError.
// Planning is not gated: a bad spec is refused without waiting.
type Runner struct {
	Gate *Gate
	// Budget, if set, is the daemon's memory budget. A run reserves only
	// once it has a slot: a run waiting in the queue uses no memory, and
	// promising it some would refuse sessions for nothing.
	Budget *Budget
	Next   run.Runner
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Plan plans on the next runner.
func (r *Runner) Plan(spec *run.Spec) (*run.Plan, error) { return r.Next.Plan(spec) }

// Run waits for a slot, records the wait in p.Waited and runs p.
func (r *Runner) Run(ctx context.Context, p *run.Plan, s run.Stream) (*run.Result, error) {
	now := r.Now
	if now == nil {
		now = time.Now
	}
	queued := now()
	release, err := r.Gate.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	p.Waited = now().Sub(queued)
	if r.Budget != nil {
		unreserve, err := r.Budget.Reserve(p.Limits.Memory, "this run")
		if err != nil {
			return nil, err
		}
		defer unreserve()
	}
	return r.Next.Run(ctx, p, s)
}
