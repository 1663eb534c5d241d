package admission

import (
	"context"
	"time"

	"github.com/sandboxd/sandboxd/internal/run"
)

// Runner admits every run of next through a Gate: a run waits for a slot
// (or fails at once with ErrQueueFull) and holds it until its result is
// in. Planning is not gated: a bad spec is refused without waiting.
type Runner struct {
	Gate *Gate
	Next run.Runner
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
	return r.Next.Run(ctx, p, s)
}
