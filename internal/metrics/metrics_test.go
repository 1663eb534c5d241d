package metrics

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/admission"
	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/pool"
	"github.com/sandboxd/sandboxd/internal/run"
)

// TestConnectionMetrics: the connection gauge reads its source, and both
// refusal reasons exist before the first refusal (so rate() works).
func TestConnectionMetrics(t *testing.T) {
	m := New(Sources{Conns: func() int { return 7 }})
	for _, want := range []string{
		"sandboxd_connections_open 7\n",
		`sandboxd_connections_refused_total{reason="per_ip"} 0` + "\n",
		`sandboxd_connections_refused_total{reason="total"} 0` + "\n",
	} {
		if got := scrape(m); !strings.Contains(got, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	m.ConnRefused("per_ip")
	m.ConnRefused("per_ip")
	if got := scrape(m); !strings.Contains(got, `sandboxd_connections_refused_total{reason="per_ip"} 2`+"\n") {
		t.Errorf("two per-IP refusals not counted")
	}
}

// TestPoolMetrics: each pool's figures are gauges and counters by
// runtime, the takes waiting for a sandbox among them.
func TestPoolMetrics(t *testing.T) {
	m := New(Sources{Pools: func() map[string]pool.Stats {
		return map[string]pool.Stats{"python": {Ready: 1, Starting: 2, Waiting: 3, Hits: 4, Waits: 5, Misses: 6}}
	}})
	got := scrape(m)
	for _, want := range []string{
		`sandboxd_pool_ready{runtime="python"} 1`,
		`sandboxd_pool_refills_in_flight{runtime="python"} 2`,
		`sandboxd_pool_waiting{runtime="python"} 3`,
		`sandboxd_pool_hits_total{runtime="python"} 4`,
		`sandboxd_pool_waits_total{runtime="python"} 5`,
		`sandboxd_pool_misses_total{runtime="python"} 6`,
	} {
		if !strings.Contains(got, want+"\n") {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// scrape is the registry's text exposition now.
func scrape(m *Metrics) string {
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

// budgetRunner refuses every run as over the memory budget.
type budgetRunner struct{ b *admission.Budget }

func (r budgetRunner) Plan(*run.Spec) (*run.Plan, error) { return &run.Plan{}, nil }
func (r budgetRunner) Run(context.Context, *run.Plan, run.Stream) (*run.Result, error) {
	_, err := r.b.Reserve(r.b.Limit()+1, "this run")
	return nil, err
}

// TestMemoryMetrics: the budget and the promise are gauges, and a run
// refused by the budget counts once, as memory_budget, not queue_full.
func TestMemoryMetrics(t *testing.T) {
	var m *Metrics
	b := admission.NewBudget(2*limits.GiB, func() { m.Rejected("memory_budget") })
	m = New(Sources{MemoryBudget: b.Limit, MemoryPromised: b.Promised})
	rel, err := b.Reserve(512*limits.MiB, "this session")
	if err != nil {
		t.Fatal(err)
	}
	defer rel()
	r := &Runner{Next: budgetRunner{b}, Metrics: m}
	if _, err := r.Run(context.Background(), &run.Plan{}, run.Stream{}); !errors.Is(err, admission.ErrOverBudget) {
		t.Fatalf("run = %v", err)
	}
	got := scrape(m)
	for _, want := range []string{
		"sandboxd_memory_budget_bytes 2.147483648e+09\n",
		"sandboxd_memory_promised_bytes 5.36870912e+08\n",
		`sandboxd_requests_rejected_total{reason="memory_budget"} 1` + "\n",
		`sandboxd_requests_rejected_total{reason="queue_full"} 0` + "\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("/metrics lacks %q", strings.TrimSpace(want))
		}
	}
}

// TestQueueDepth: sandboxd_queue_depth, the figure the autoscaler follows,
// is the runs and the session cells waiting in their gates' queues
// together, and the two parts are shown apart too.
func TestQueueDepth(t *testing.T) {
	runs, cells := admission.New(1, 8), admission.New(1, 8)
	m := New(Sources{Running: runs.Running, Waiting: runs.Waiting, CellsRunning: cells.Running, CellsWaiting: cells.Waiting})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hold := func(g *admission.Gate) {
		rel, err := g.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(rel)
	}
	hold(runs)
	hold(cells)
	var wg sync.WaitGroup
	defer wg.Wait()
	wait := func(g *admission.Gate, n int) {
		for range n {
			wg.Go(func() {
				if _, err := g.Acquire(ctx); err == nil {
					t.Error("a waiter got a slot held all along")
				}
			})
		}
	}
	wait(runs, 3)
	wait(cells, 2)
	deadline := time.Now().Add(10 * time.Second)
	for runs.Waiting() != 3 || cells.Waiting() != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("waiters never queued: %d runs, %d cells", runs.Waiting(), cells.Waiting())
		}
		time.Sleep(time.Millisecond)
	}
	got := scrape(m)
	for _, want := range []string{
		"sandboxd_queue_depth 5\n",
		"sandboxd_run_queue_depth 3\n",
		"sandboxd_session_cell_queue_depth 2\n",
		"sandboxd_runs_active 1\n",
		"sandboxd_session_cells_active 1\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("/metrics lacks %q", strings.TrimSpace(want))
		}
	}
	cancel()
	wg.Wait()
	if got := scrape(m); !strings.Contains(got, "sandboxd_queue_depth 0\n") {
		t.Error("sandboxd_queue_depth is not 0 once the waiters left")
	}
}
