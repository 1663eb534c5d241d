package tests

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestFairAdmission (issue 14): tenant A floods a daemon of two slots with
// long runs. A gets both slots (nobody else asks), half the queue, and a
// 429 naming its share past that; tenant B's run is then admitted at the
// first slot A frees, ahead of A's earlier waiters, so it returns before
// any of A's queued runs can have finished.
func TestFairAdmission(t *testing.T) {
	requireDaemon(t)
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("tenant-a\ntenant-b\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, daemonConfig{args: []string{"--token-file", tokens, "--max-concurrent", "2", "--max-queue", "8"}})
	d.token = "tenant-b" // the helpers' requests (metrics) are B's
	asA := http.Header{"Authorization": {"Bearer tenant-a"}}

	// Each of A's runs lasts 8s: far longer than B's print(1) on a
	// loaded machine.
	long := mustJSON(t, pyRun("import time\ntime.sleep(8)\n", map[string]any{"timeout": "60s"}))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	var aDone, aRefused atomic.Int64
	var refusal atomic.Value
	const flood = 12
	for range flood {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, b, err := d.do(ctx, "POST", "/v1/runs", long, asA)
			switch {
			case err != nil:
			case resp.StatusCode == http.StatusTooManyRequests:
				aRefused.Add(1)
				refusal.Store(string(b))
			case resp.StatusCode == http.StatusOK:
				aDone.Add(1)
			}
		}()
	}
	if v, ok := d.waitGauge(t, 30*time.Second, "sandboxd_runs_active", func(v float64) bool { return v == 2 }); !ok {
		t.Fatalf("sandboxd_runs_active = %v, want A's 2", v)
	}
	if v, ok := d.waitGauge(t, 30*time.Second, "sandboxd_queue_depth", func(v float64) bool { return v == 4 }); !ok {
		t.Fatalf("sandboxd_queue_depth = %v, want A's share of the queue of 8: 4", v)
	}
	for deadline := time.Now().Add(30 * time.Second); aRefused.Load() < flood-6; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of A's %d runs refused, want %d", aRefused.Load(), flood, flood-6)
		}
	}
	if msg, _ := refusal.Load().(string); !strings.Contains(msg, "share of the queue") {
		t.Errorf("A's 429 does not name its share of the queue: %s", msg)
	}

	start := time.Now()
	resp, b, err := d.do(ctx, "POST", "/v1/runs", mustJSON(t, pyRun("print(1)\n", nil)), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("B's run while A floods: %v %v\n%s", err, resp, b)
	}
	if r := decodeAPIResult(t, b); r.Status != "ok" || string(r.Stdout) != "1\n" {
		t.Errorf("B's run: %s %q", r.Status, r.Stdout)
	}
	// A's first two runs may have ended; its queued ones started no
	// earlier than B's, and last 8s.
	if n := aDone.Load(); n > 2 {
		t.Errorf("B's run came back after %d of A's runs, %s after it was sent: it waited behind A's queue", n, time.Since(start).Round(time.Millisecond))
	}
	t.Logf("B's run took %s with A's 2 running and 4 waiting; A refused %d times", time.Since(start).Round(time.Millisecond), aRefused.Load())
}

// TestFairCPU (issue 14): tenant A spins four runs at once and tenant B
// one, all for the same 4 seconds. The busy sandboxes of a tenant share
// one CPU weight (isolate/cpushares_linux.go), so B's one run gets about
// as much CPU as A's four together: four times each of A's, where equal
// weights per sandbox would give every run the same. B is the bystander:
// its run's CPU is what A's runs would take from it.
func TestFairCPU(t *testing.T) {
	requireDaemon(t)
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("tenant-a\ntenant-b\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, daemonConfig{args: []string{"--token-file", tokens, "--max-concurrent", "8"}})
	d.token = "tenant-b"
	spin := mustJSON(t, pyRun("while True:\n    pass\n", map[string]any{"timeout": "4s", "cpu_time": "30s"}))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	type answer struct {
		tenant string
		res    *result
		err    error
	}
	answers := make(chan answer, 5)
	for _, tenant := range []string{"tenant-a", "tenant-a", "tenant-a", "tenant-a", "tenant-b"} {
		go func() {
			resp, b, err := d.do(ctx, "POST", "/v1/runs", spin, http.Header{"Authorization": {"Bearer " + tenant}})
			if err == nil && resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("HTTP %d: %s", resp.StatusCode, tail(b))
			}
			var res *result
			if err == nil {
				res = decodeAPIResult(t, b)
			}
			answers <- answer{tenant, res, err}
		}()
	}
	var a []time.Duration
	var b time.Duration
	for range 5 {
		ans := <-answers
		if ans.err != nil {
			t.Fatalf("%s's run: %v", ans.tenant, ans.err)
		}
		if ans.res.Status != "timeout" {
			t.Fatalf("%s's run: status %s (%s), want timeout", ans.tenant, ans.res.Status, ans.res.Reason)
		}
		if ans.tenant == "tenant-a" {
			a = append(a, ans.res.CPUTime)
		} else {
			b = ans.res.CPUTime
		}
	}
	var sum time.Duration
	for _, c := range a {
		sum += c
	}
	mean := sum / time.Duration(len(a))
	t.Logf("CPU in 4s: B's run %s; A's runs %v (mean %s); ratio %.2f", b, a, mean, float64(b)/float64(mean))
	// Equal weights per sandbox give a ratio near 1, shares by tenant
	// near 4 (B's run takes a core where it can; A's four share the
	// rest). 2 leaves room for a busy host's noise either way.
	if b < 2*mean {
		t.Errorf("B's run got %s of CPU, A's %s each: under twice as much, so A's four runs took B's share", b, mean)
	}
}
