package metrics

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/sandboxd/sandboxd/internal/admission"
	"github.com/sandboxd/sandboxd/internal/errdefs"
	"github.com/sandboxd/sandboxd/internal/run"
)

// Runner counts and logs the runs of next: the run counters, the duration
// histogram, queue_full rejections (memory_budget ones are counted by the
// budget itself), and one log line per run. It wraps the
// admitted runner (admission.Runner), so it sees the wait for a slot in
// the plan.
type Runner struct {
	Next    run.Runner
	Metrics *Metrics
	Log     *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Plan plans on the next runner.
func (r *Runner) Plan(spec *run.Spec) (*run.Plan, error) { return r.Next.Plan(spec) }

// Run runs p on the next runner, then counts and logs its result.
func (r *Runner) Run(ctx context.Context, p *run.Plan, s run.Stream) (*run.Result, error) {
	now := r.Now
	if now == nil {
		now = time.Now
	}
	start := now()
	res, err := r.Next.Run(ctx, p, s)
	if res == nil {
		// The memory budget counts its own refusals (sessions' too).
		if errdefs.Is(err, errdefs.ErrExhausted) && !errors.Is(err, admission.ErrOverBudget) {
			r.Metrics.Rejected("queue_full")
		}
		return nil, err
	}
	took := now().Sub(start) - p.Waited
	r.Metrics.runs.WithLabelValues(string(res.Status), res.Runtime).Inc()
	r.Metrics.duration.WithLabelValues(res.Runtime).Observe(took.Seconds())
	if r.Log != nil {
		level := slog.LevelInfo
		if res.Status == run.StatusInternalError {
			// Only the sandbox's failure: a run its client gave up on
			// is canceled.
			level = slog.LevelError
		}
		r.Log.Log(ctx, level, "run", "id", res.ID, "runtime", res.Runtime, "status", res.Status,
			"exit_code", res.ExitCode, "wall", res.WallTime.Round(time.Microsecond), "cpu", res.CPUTime.Round(time.Microsecond),
			"peak_memory", res.PeakMemory, "queued", p.Waited.Round(time.Microsecond), "took", took.Round(time.Microsecond),
			"error", run.Clip(res.Error, run.MaxMessage))
	}
	return res, err
}
