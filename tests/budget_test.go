package tests

import (
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/testenv"
)

// TestMemoryBudget: a daemon promises no more memory than its budget. With
// --memory-budget 1GiB, two sessions of 400MiB fit and a third is a 429
// naming the budget, what is promised and what it needs; a run that fits
// in what is left (the bystander) still runs, and one that does not is a
// 429 too. A deleted session gives its memory back, and so does a dead
// one, at once. /metrics shows the budget, the promise and the refusals,
// and the sandboxes' cgroup parent is limited to the budget. The daemon
// has a cgroup parent of its own, so that its limit holds no other test's
// sandboxes.
func TestMemoryBudget(t *testing.T) {
	requireDaemon(t)
	state, parent := testenv.StateDir(t, "budget")
	d := startDaemon(t, daemonConfig{stateDir: state, args: []string{"--cgroup-parent", parent, "--memory-budget", "1GiB"}})
	const gib, mib = 1 << 30, 1 << 20
	if got := d.gauge(t, "sandboxd_memory_budget_bytes"); got != gib {
		t.Errorf("sandboxd_memory_budget_bytes = %v, want %d", got, gib)
	}
	// The parent's limit: v1's memory.limit_in_bytes, or v2's memory.max.
	limited := false
	for _, f := range []string{filepath.Join("/sys/fs/cgroup/memory", parent, "memory.limit_in_bytes"), filepath.Join("/sys/fs/cgroup", parent, "memory.max")} {
		if b, err := os.ReadFile(f); err == nil {
			limited = true
			if got := strings.TrimSpace(string(b)); got != "1073741824" {
				t.Errorf("the cgroup parent's %s = %s, want the budget, 1073741824", f, got)
			}
		}
	}
	if !limited {
		t.Errorf("the cgroup parent %s has no memory limit file", parent)
	}

	spec := map[string]any{"limits": map[string]any{"memory": "400MiB"}}
	first := d.createSession(t, spec)
	d.createSession(t, spec)
	if got := d.gauge(t, "sandboxd_memory_promised_bytes"); got != 800*mib {
		t.Errorf("promised %v with two sessions of 400MiB, want %d", got, 800*mib)
	}
	resp, body := d.request(t, "POST", "/v1/sessions", mustJSON(t, spec), nil)
	msg := wantAPIError(t, resp, body, http.StatusTooManyRequests, "too_many_requests")
	for _, want := range []string{"memory budget of 1GiB", "800MiB", "400MiB"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the refusal %q does not name %q (the budget, what is promised, what the session needs)", msg, want)
		}
	}

	// The bystander: a run that fits in the 224MiB left.
	if res := d.run(t, pyRun("print(1)", map[string]any{"memory": "128MiB"})); res.Status != "ok" || string(res.Stdout) != "1\n" {
		t.Errorf("a run within the budget: %s %q %q", res.Status, res.Stdout, res.Reason)
	}
	// A run that does not fit is refused at once, streamed or not.
	big := mustJSON(t, pyRun("print(1)", map[string]any{"memory": "300MiB"}))
	resp, body = d.request(t, "POST", "/v1/runs", big, nil)
	if msg := wantAPIError(t, resp, body, http.StatusTooManyRequests, "too_many_requests"); !strings.Contains(msg, "memory budget of 1GiB") || !strings.Contains(msg, "300MiB") {
		t.Errorf("a run past the budget: %q should name the budget and what the run needs", msg)
	}
	resp, body = d.request(t, "POST", "/v1/runs?stream=1", big, nil)
	wantAPIError(t, resp, body, http.StatusTooManyRequests, "too_many_requests")
	if got := d.gauge(t, "sandboxd_requests_rejected_total", "reason", "memory_budget"); got != 3 {
		t.Errorf("sandboxd_requests_rejected_total{reason=memory_budget} = %v after three refusals", got)
	}
	if got := d.gauge(t, "sandboxd_requests_rejected_total", "reason", "queue_full"); got != 0 {
		t.Errorf("budget refusals counted as queue_full too: %v", got)
	}

	// A deleted session gives its memory back: the third fits now.
	resp, body = d.request(t, "DELETE", "/v1/sessions/"+first.ID, nil, nil)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE: %s\n%s", resp.Status, body)
	}
	if got := d.gauge(t, "sandboxd_memory_promised_bytes"); got != 400*mib {
		t.Errorf("promised %v after deleting one of two 400MiB sessions, want %d", got, 400*mib)
	}
	third := d.createSession(t, spec)
	// So does a session whose kernel died, at once, before any delete.
	if c := d.execCell(t, third.ID, "import os\nos._exit(1)"); c.State != "dead" {
		t.Fatalf("the kernel's exit left the session %s", c.State)
	}
	if got, ok := d.waitGauge(t, 10*time.Second, "sandboxd_memory_promised_bytes", func(v float64) bool { return v == 400*mib }); !ok {
		t.Errorf("promised %v after a session died, want %d", got, 400*mib)
	}
}

// TestMemoryBudgetDefaultStopsOvercommit is issue 14's attack on a daemon
// with the default budget: one token opens sessions of 4GiB (less on a
// small host) until it is refused. The sessions' limits together stay
// within the budget, which stays within the host; the refusal is a 429
// naming the budget; a bystander's run still goes through.
func TestMemoryBudgetDefaultStopsOvercommit(t *testing.T) {
	requireDaemon(t)
	state, parent := testenv.StateDir(t, "budgetdefault")
	d := startDaemon(t, daemonConfig{stateDir: state, args: []string{"--cgroup-parent", parent}})
	budget := d.gauge(t, "sandboxd_memory_budget_bytes")
	if total := memTotal(t); budget <= 0 || budget > total {
		t.Fatalf("the default budget %v is not within the host's MemTotal %v", budget, total)
	}
	size := float64(4 << 30)
	if budget < 2*size+128<<20 {
		// Half of what leaves a bystander 128MiB, in whole MiB.
		size = float64(((int64(budget) - 128<<20) / 2) &^ (1<<20 - 1))
	}
	spec := map[string]any{"limits": map[string]any{"memory": int64(size)}}
	created := 0
	for created < 8 {
		resp, body := d.request(t, "POST", "/v1/sessions", mustJSON(t, spec), nil)
		if resp.StatusCode == http.StatusCreated {
			created++
			continue
		}
		if msg := wantAPIError(t, resp, body, http.StatusTooManyRequests, "too_many_requests"); !strings.Contains(msg, "memory budget of") {
			t.Errorf("session %d: %q does not name the memory budget", created+1, msg)
		}
		break
	}
	promised := d.gauge(t, "sandboxd_memory_promised_bytes")
	if want := float64(int(budget/size)) * size; created != min(8, int(budget/size)) || promised != min(8*size, want) {
		t.Errorf("%d sessions of %v promised %v under a budget of %v", created, size, promised, budget)
	}
	t.Logf("budget %.1f GiB: %d sessions of %.1f GiB admitted, %.1f GiB promised", budget/(1<<30), created, size/(1<<30), promised/(1<<30))
	if res := d.run(t, pyRun("print(1)", map[string]any{"memory": "64MiB"})); res.Status != "ok" {
		t.Errorf("a bystander's run next to the full budget: %s %q", res.Status, res.Reason)
	}
}

// memTotal is the host's MemTotal in bytes.
func memTotal(t *testing.T) float64 {
	t.Helper()
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "MemTotal:" {
			kb, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb * 1024
		}
	}
	t.Fatal("/proc/meminfo has no MemTotal")
	return 0
}
