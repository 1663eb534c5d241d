package admission

import (
	"context"
	"errors"
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

// Run waits for a slot, records the wait in p.Waited and runs p. A
// caller that goes while the run waits gets a canceled result.
func (r *Runner) Run(ctx context.Context, p *run.Plan, s run.Stream) (*run.Result, error) {
	now := r.Now
	if now == nil {
		now = time.Now
	}
	if ctx.Err() != nil {
		// The caller went while the run was planned: no slot for it.
		return canceled(ctx, p, "it was planned"), nil
	}
	queued := now()
	release, err := r.Gate.Acquire(ctx)
	p.Waited = now().Sub(queued)
	if err != nil {
		if cause := ctx.Err(); cause != nil && errors.Is(err, cause) {
			return canceled(ctx, p, "it waited for a slot"), nil
		}
		return nil, err
	}
	defer release()
	if r.Budget != nil {
		unreserve, err := r.Budget.Reserve(p.Limits.Memory, "this run")
		if err != nil {
			return nil, err
		}
		defer unreserve()
	}
	return r.Next.Run(ctx, p, s)
}

// canceled is the result of a run whose caller went before it was
// admitted: canceled, as it would be a moment later in the sandbox, so
// that a client's going is one status whatever phase it came in.
func canceled(ctx context.Context, p *run.Plan, while string) *run.Result {
	res := run.Canceled(context.Cause(ctx), while)
	res.Runtime = p.Runtime
	return res
}
