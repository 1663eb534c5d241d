package session

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/admission"
	"github.com/sandboxd/sandboxd/internal/errdefs"
	"github.com/sandboxd/sandboxd/internal/run"
)

// TestCellsPassTheGate: with a gate of one slot and one place in its
// queue, a cell runs, a second (another session's) waits, and a third (a
// third session's) is refused at once, naming the queue, while the first
// two finish. A session's own waiting cells take no place in the gate's
// queue: only the one holding its turn does.
func TestCellsPassTheGate(t *testing.T) {
	gate := admission.New(1, 1)
	m := newManager(t, Config{Gate: gate})
	var sessions [3]*Session
	for i := range sessions {
		s, err := m.Create(t.Context(), "me", &run.SessionSpec{})
		if err != nil {
			t.Fatal(err)
		}
		sessions[i] = s
	}
	results := make(chan *run.CellResult, 4)
	var wg sync.WaitGroup
	start := func(s *Session, code string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := s.Exec(t.Context(), run.CellRequest{Code: code}, run.CellStream{})
			if err != nil {
				t.Errorf("cell %q: %v", code, err)
				return
			}
			results <- res
		}()
	}
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("waited 30s for %s: %d running, %d waiting", what, gate.Running(), gate.Waiting())
			}
		}
	}
	// A cell of the first session that runs until the file go appears.
	blocked := func(file string) string {
		return "import os, time\nwhile not os.path.exists('" + file + "'):\n    time.sleep(0.01)\n1+1"
	}
	release := func(file string) {
		if err := sessions[0].ws.WriteFile(run.File{Name: file}); err != nil {
			t.Fatal(err)
		}
	}
	finished := func(want int) {
		t.Helper()
		wg.Wait()
		n := 0
		for len(results) > 0 {
			if res := <-results; res.Status != run.StatusOK || res.Result["text/plain"] != "2" {
				t.Errorf("an admitted cell: %s %+v %q", res.Status, res.Result, res.Reason)
			}
			n++
		}
		if n != want || gate.Running() != 0 || gate.Waiting() != 0 {
			t.Errorf("%d cells of %d finished; the gate still counts %d running, %d waiting", n, want, gate.Running(), gate.Waiting())
		}
	}

	start(sessions[0], blocked("go1"))
	waitUntil("the first cell to run", func() bool { return gate.Running() == 1 })
	start(sessions[1], "1+1")
	waitUntil("the second session's cell to wait for a slot", func() bool { return gate.Waiting() == 1 })
	_, err := sessions[2].Exec(t.Context(), run.CellRequest{Code: "1+1"}, run.CellStream{})
	if !errors.Is(err, admission.ErrQueueFull) || !errdefs.Is(err, errdefs.ErrExhausted) || !strings.Contains(err.Error(), "queue") {
		t.Fatalf("a cell past the gate's queue: %v; want admission.ErrQueueFull naming the queue", err)
	}
	t.Logf("the refusal: %v", err)
	if info := sessions[2].Info(); info.State != run.SessionIdle || info.Cells != 0 {
		t.Errorf("the refused cell's session: %+v", info)
	}
	release("go1")
	finished(2)
	if res := exec(t, sessions[2], "1+1"); res.Status != run.StatusOK {
		t.Errorf("the refused session's next cell: %s", res.Status)
	}

	// The first session's cells waiting for its turn wait outside the gate.
	start(sessions[0], blocked("go2"))
	waitUntil("the first cell to run", func() bool { return gate.Running() == 1 })
	start(sessions[0], "1+1")
	start(sessions[0], "1+1")
	waitUntil("two cells waiting in the first session", func() bool { return sessions[0].queue.waiting() == 2 })
	if gate.Waiting() != 0 {
		t.Errorf("a session's waiting cells take %d places in the gate's queue", gate.Waiting())
	}
	release("go2")
	finished(3)
}

// TestDeadSessionNotQueued: a dead session's cell is ErrDead at once,
// even with the gate full: it waits for no slot.
func TestDeadSessionNotQueued(t *testing.T) {
	gate := admission.New(1, 0)
	m := newManager(t, Config{Gate: gate})
	s, err := m.Create(t.Context(), "me", &run.SessionSpec{})
	if err != nil {
		t.Fatal(err)
	}
	if res := exec(t, s, "import os\nos._exit(3)"); res.State != run.SessionDead {
		t.Fatalf("os._exit: %+v", res)
	}
	release, err := gate.Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if _, err := s.Exec(t.Context(), run.CellRequest{Code: "1"}, run.CellStream{}); !errors.Is(err, ErrDead) || !strings.Contains(err.Error(), "code 3") {
		t.Errorf("a cell in a dead session with the gate full: %v; want ErrDead saying why", err)
	}
}
