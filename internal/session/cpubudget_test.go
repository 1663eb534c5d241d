package session

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
)

// TestCellCPUBudgetIsPerCell: each cell has its own CPU budget, measured
// from the session's cgroup. Heavy cells that together use several times
// a cell's budget each end with cpu_limit, and the session lives: the
// kernel's RLIMIT_CPU, which counts its whole life, is the session's
// budget, not a cell's.
func TestCellCPUBudgetIsPerCell(t *testing.T) {
	m := newManager(t, Config{})
	cell := 500 * time.Millisecond
	s, err := m.Create(t.Context(), "me", &run.SessionSpec{Limits: limits.Limits{CPUTime: limits.Duration(cell), Timeout: limits.Duration(30 * time.Second)}})
	if err != nil {
		t.Fatal(err)
	}
	exec(t, s, "kept = 'yes'")
	var total time.Duration
	// Past a cell's budget plus RLIMIT_CPU's one second of margin, twice.
	for i := 0; total < 2*(cell+time.Second); i++ {
		res := exec(t, s, "while True: pass")
		if res.Status != run.StatusCPULimit || res.State != run.SessionIdle || res.CPUTime < cell {
			t.Fatalf("heavy cell %d (%s used before it): status %s, state %s, cpu %s, reason %q", i, total, res.Status, res.State, res.CPUTime, res.Reason)
		}
		total += res.CPUTime
	}
	if r := exec(t, s, "kept"); r.Result["text/plain"] != "'yes'" || r.State != run.SessionIdle {
		t.Errorf("after %s of heavy cells: %+v", total, r)
	}
	// Info reports the CPU used to the millisecond (rounded), so the
	// cells' total is rounded the same way: rounding keeps the order.
	if info := s.Info(); info.CPUUsed.Std() < total.Round(time.Millisecond) {
		t.Errorf("the session reports %s of CPU used, its cells %s", info.CPUUsed, total)
	}
}

// spinner is a cell that leaves a process spinning after it ends.
const spinner = "import subprocess\np = subprocess.Popen(['/usr/bin/python3', '-c', 'while True: pass'])\n'started'"

// TestBackgroundSpinnerSpendsSessionBudget: a cell that starts a
// background process and ends is fine; the process spinning between cells
// uses up the session's CPU budget, and the session dies with a reason
// naming it, which the next cell gets as ErrDead. A bystander session of
// the same daemon goes on, its own budget untouched.
func TestBackgroundSpinnerSpendsSessionBudget(t *testing.T) {
	m := newManager(t, Config{})
	budget := 2 * time.Second
	s, err := m.Create(t.Context(), "me", &run.SessionSpec{CPUBudget: limits.Duration(budget)})
	if err != nil {
		t.Fatal(err)
	}
	other, err := m.Create(t.Context(), "other", &run.SessionSpec{CPUBudget: limits.Duration(budget)})
	if err != nil {
		t.Fatal(err)
	}
	if res := exec(t, s, spinner); res.Status != run.StatusOK || res.State != run.SessionIdle {
		t.Fatalf("the spinner's cell: %s %s %q", res.Status, res.State, res.Reason)
	}
	// A loaded 2-core machine may give the spinner a fraction of a core.
	info := waitState(t, s, run.SessionDead, 60*time.Second)
	if !strings.Contains(info.Reason, "CPU budget of 2s") || info.CPUUsed.Std() < budget {
		t.Errorf("dead session: reason %q, cpu used %s", info.Reason, info.CPUUsed)
	}
	_, err = s.Exec(t.Context(), run.CellRequest{Code: "1"}, run.CellStream{})
	if !errors.Is(err, ErrDead) || !strings.Contains(err.Error(), "CPU budget of 2s") {
		t.Errorf("a cell after the budget ran out: %v", err)
	}
	if res := exec(t, other, "sum(range(1000))"); res.Status != run.StatusOK || res.State != run.SessionIdle {
		t.Errorf("the bystander: %s %s %q", res.Status, res.State, res.Reason)
	}
	if info := other.Info(); info.State != run.SessionIdle || info.CPUUsed.Std() >= budget/2 {
		t.Errorf("the bystander: state %s, cpu used %s", info.State, info.CPUUsed)
	}
}

// TestCellPastSessionBudget: a cell that uses up the session's budget
// (below its own) ends with cpu_limit, and the session is dead, its
// reason naming the session's budget, not the cell's.
func TestCellPastSessionBudget(t *testing.T) {
	m := newManager(t, Config{})
	s, err := m.Create(t.Context(), "me", &run.SessionSpec{
		CPUBudget: limits.Duration(time.Second),
		Limits:    limits.Limits{CPUTime: limits.Duration(20 * time.Second), Timeout: limits.Duration(60 * time.Second)},
	})
	if err != nil {
		t.Fatal(err)
	}
	res := exec(t, s, "while True: pass")
	if res.Status != run.StatusCPULimit || res.State != run.SessionDead || !strings.Contains(res.Reason, "the session's CPU budget of 1s") {
		t.Errorf("status %s, state %s, reason %q", res.Status, res.State, res.Reason)
	}
	if info := s.Info(); info.State != run.SessionDead || info.Reason != res.Reason {
		t.Errorf("info: %s %q", info.State, info.Reason)
	}
}

// waitState polls s until it is in state want.
func waitState(t *testing.T, s *Session, want run.SessionState, within time.Duration) run.SessionInfo {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		info := s.Info()
		if info.State == want {
			return info
		}
		if time.Now().After(deadline) {
			t.Fatalf("session still %s after %s (cpu used %s), want %s", info.State, within, info.CPUUsed, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
