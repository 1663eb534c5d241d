package tests

import (
	"context"
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
