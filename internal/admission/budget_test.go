package admission

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sandboxd/sandboxd/internal/errdefs"
	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
)

func TestBudgetReserveRelease(t *testing.T) {
	var rejected int
	b := NewBudget(1*limits.GiB, func() { rejected++ })
	relA, err := b.Reserve(512*limits.MiB, "this session")
	if err != nil {
		t.Fatal(err)
	}
	relB, err := b.Reserve(512*limits.MiB, "this session")
	if err != nil {
		t.Fatal(err)
	}
	if got := b.Promised(); got != limits.GiB {
		t.Fatalf("promised %s after two reservations of 512MiB, want 1GiB", got)
	}
	_, err = b.Reserve(1, "this run")
	var be *BudgetError
	if !errors.As(err, &be) || !errors.Is(err, ErrOverBudget) || !errdefs.Is(err, errdefs.ErrExhausted) {
		t.Fatalf("Reserve past the budget = %v, want a *BudgetError of class exhausted", err)
	}
	for _, want := range []string{"memory budget", "1GiB", "this run", "1B"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if rejected != 1 {
		t.Errorf("onReject called %d times for one refusal", rejected)
	}
	relA()
	relA() // a second release gives nothing back twice
	if got := b.Promised(); got != 512*limits.MiB {
		t.Fatalf("promised %s after releasing one of two 512MiB twice, want 512MiB", got)
	}
	relB()
	if got := b.Promised(); got != 0 {
		t.Fatalf("promised %s after releasing everything", got)
	}
}

func TestBudgetNeverFits(t *testing.T) {
	b := NewBudget(256*limits.MiB, nil)
	_, err := b.Reserve(limits.GiB, "this session")
	if err == nil || !strings.Contains(err.Error(), "more than the daemon's whole memory budget of 256MiB") {
		t.Errorf("a reservation above the whole budget: %v", err)
	}
	if _, err := b.Reserve(-1, "this run"); err == nil {
		t.Error("a negative reservation was granted")
	}
	if b.Promised() != 0 {
		t.Errorf("refusals left %s promised", b.Promised())
	}
}

// TestBudgetHammer: concurrent reservers never hold more than the budget
// together, and everything granted comes back, under -race.
func TestBudgetHammer(t *testing.T) {
	const budget = 10 * limits.MiB
	b := NewBudget(budget, nil)
	var held, peak atomic.Int64
	var granted, refused atomic.Int64
	// Rounds of 64 reservers of 1-4 MiB (160 MiB asked of 10) that hold
	// what they got until all have tried, so each round pushes the budget
	// however the goroutines are scheduled.
	for range 20 {
		var tried, done sync.WaitGroup
		hold := make(chan struct{})
		for i := range 64 {
			tried.Add(1)
			done.Add(1)
			go func() {
				defer done.Done()
				n := limits.Bytes(i%4+1) * limits.MiB
				rel, err := b.Reserve(n, "this run")
				tried.Done()
				if err != nil {
					refused.Add(1)
					return
				}
				granted.Add(1)
				h := held.Add(int64(n))
				for p := peak.Load(); h > p && !peak.CompareAndSwap(p, h); p = peak.Load() {
				}
				<-hold
				held.Add(-int64(n))
				rel()
				rel()
			}()
		}
		tried.Wait()
		close(hold)
		done.Wait()
	}
	if peak.Load() > int64(budget) {
		t.Errorf("%s held at once under a budget of %s", limits.Bytes(peak.Load()), budget)
	}
	if b.Promised() != 0 {
		t.Errorf("promised %s after every reservation was released", b.Promised())
	}
	if granted.Load() == 0 || refused.Load() == 0 {
		t.Errorf("granted %d, refused %d: the hammer did not push the budget", granted.Load(), refused.Load())
	}
	t.Logf("granted %d, refused %d, peak %s of %s", granted.Load(), refused.Load(), limits.Bytes(peak.Load()), budget)
}

// fakeRunner is a run.Runner that reports the budget's promise while it
// runs.
type fakeRunner struct {
	b    *Budget
	seen limits.Bytes
}

func (f *fakeRunner) Plan(*run.Spec) (*run.Plan, error) { return &run.Plan{}, nil }
func (f *fakeRunner) Run(context.Context, *run.Plan, run.Stream) (*run.Result, error) {
	f.seen = f.b.Promised()
	return &run.Result{Status: run.StatusOK}, nil
}

// TestRunnerReservesForTheRun: a run holds its memory limit while it runs,
// gives it back after, and is refused at once past the budget.
func TestRunnerReservesForTheRun(t *testing.T) {
	b := NewBudget(limits.GiB, nil)
	next := &fakeRunner{b: b}
	r := &Runner{Gate: New(1, 0), Budget: b, Next: next}
	p := &run.Plan{Limits: limits.Limits{Memory: 300 * limits.MiB}}
	if _, err := r.Run(context.Background(), p, run.Stream{}); err != nil {
		t.Fatal(err)
	}
	if next.seen != 300*limits.MiB || b.Promised() != 0 {
		t.Errorf("promised %s during the run and %s after, want 300MiB and 0", next.seen, b.Promised())
	}
	rel, _ := b.Reserve(800*limits.MiB, "this session")
	defer rel()
	res, err := r.Run(context.Background(), p, run.Stream{})
	if res != nil || !errors.Is(err, ErrOverBudget) {
		t.Fatalf("a run past the budget: %v, %v", res, err)
	}
	if r.Gate.Running() != 0 || b.Promised() != 800*limits.MiB {
		t.Errorf("a refused run left %d slots and %s promised", r.Gate.Running(), b.Promised())
	}
}

// TestBudgetTryReserve: a warm sandbox's reservation counts against the
// budget like a run's, but its refusal is not a refused request.
func TestBudgetTryReserve(t *testing.T) {
	rejected := 0
	b := NewBudget(512*limits.MiB, func() { rejected++ })
	release, err := b.TryReserve(256 * limits.MiB)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Reserve(512*limits.MiB, "this run"); !errors.Is(err, ErrOverBudget) || rejected != 1 {
		t.Errorf("a run past a warm sandbox's reservation: %v, %d counted", err, rejected)
	}
	if _, err := b.TryReserve(512 * limits.MiB); !errors.Is(err, ErrOverBudget) || rejected != 1 {
		t.Errorf("a warm sandbox past the budget: %v, %d counted; want refused, not counted", err, rejected)
	}
	release()
	if b.Promised() != 0 {
		t.Errorf("promised %v after release", b.Promised())
	}
}
