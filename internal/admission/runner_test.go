package admission

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/run"
)

// countingRunner counts the runs that reached it.
type countingRunner struct{ runs int }

func (c *countingRunner) Plan(spec *run.Spec) (*run.Plan, error) { return &run.Plan{Spec: spec}, nil }

func (c *countingRunner) Run(context.Context, *run.Plan, run.Stream) (*run.Result, error) {
	c.runs++
	return &run.Result{Status: run.StatusOK}, nil
}

// TestRunnerCanceledBeforeAdmission: a caller that goes before its run
// has a slot, while it was planned or while it waited in the queue, gets
// a canceled result (a timeout for a passed deadline) with no error, as
// it would once running, and the run never reaches the next runner.
func TestRunnerCanceledBeforeAdmission(t *testing.T) {
	next := &countingRunner{}
	g := New(1, 4)
	r := &Runner{Gate: g, Next: next}
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	res, err := r.Run(gone, &run.Plan{Runtime: "python"}, run.Stream{})
	if err != nil || res.Status != run.StatusCanceled || res.Runtime != "python" || !strings.HasSuffix(res.Reason, "while it was planned") {
		t.Errorf("gone before admission: %v, %+v", err, res)
	}

	hold, err := g.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer hold()
	for _, c := range []struct {
		name   string
		end    func(context.Context) (context.Context, context.CancelFunc)
		status run.Status
	}{
		{"canceled", func(ctx context.Context) (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(ctx)
			time.AfterFunc(50*time.Millisecond, cancel)
			return ctx, cancel
		}, run.StatusCanceled},
		{"deadline", func(ctx context.Context) (context.Context, context.CancelFunc) {
			return context.WithTimeout(ctx, 50*time.Millisecond)
		}, run.StatusTimeout},
	} {
		ctx, cancel := c.end(context.Background())
		p := &run.Plan{Runtime: "python"}
		res, err := r.Run(ctx, p, run.Stream{})
		cancel()
		if err != nil || res.Status != c.status || !strings.HasSuffix(res.Reason, "while it waited for a slot") || res.Error != "" {
			t.Errorf("%s in the queue: %v, %+v", c.name, err, res)
		}
		if p.Waited < 50*time.Millisecond {
			t.Errorf("%s in the queue: waited %s, want the time in the queue", c.name, p.Waited)
		}
	}
	if next.runs != 0 || g.Waiting() != 0 || g.Running() != 1 {
		t.Errorf("after the canceled runs: %d reached the runner, %d waiting, %d running", next.runs, g.Waiting(), g.Running())
	}
}
