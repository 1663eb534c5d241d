package session

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
)

var errOver = errors.New("over the fake budget")

// fakeBudget is a Reserver that counts the releases of each reservation,
// so that a second one (a double release) shows.
type fakeBudget struct {
	limit limits.Bytes

	mu       sync.Mutex
	promised limits.Bytes
	releases []int
}

func (b *fakeBudget) Reserve(n limits.Bytes, what string) (func(), error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.promised+n > b.limit {
		return nil, fmt.Errorf("%w: %s needs %s", errOver, what, n)
	}
	b.promised += n
	i := len(b.releases)
	b.releases = append(b.releases, 0)
	return func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.releases[i]++
		b.promised -= n
	}, nil
}

func (b *fakeBudget) state() (limits.Bytes, []int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.promised, append([]int(nil), b.releases...)
}

// waitPromised polls until the budget's promise is want.
func waitPromised(t *testing.T, b *fakeBudget, want limits.Bytes) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, _ := b.state()
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("promised %s, want %s", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSessionsReserveMemory: a session holds its memory limit from the
// budget from creation to its death or deletion, is refused past the
// budget, and every reservation is given back exactly once (death then
// delete, delete, a failed start, close).
func TestSessionsReserveMemory(t *testing.T) {
	b := &fakeBudget{limit: 300 * limits.MiB}
	m := newManager(t, Config{Memory: b})
	spec := func() *run.SessionSpec { return &run.SessionSpec{Limits: limits.Limits{Memory: 128 * limits.MiB}} }
	a, err := m.Create(t.Context(), "me", spec())
	if err != nil {
		t.Fatal(err)
	}
	bs, err := m.Create(t.Context(), "me", spec())
	if err != nil {
		t.Fatal(err)
	}
	waitPromised(t, b, 256*limits.MiB)
	if _, err := m.Create(t.Context(), "me", spec()); !errors.Is(err, errOver) {
		t.Fatalf("a session past the budget: %v", err)
	}
	if m.Count() != 2 {
		t.Errorf("%d sessions after a refusal, want 2", m.Count())
	}

	// The kernel's death gives its memory back at once, the later delete
	// nothing more.
	if res := exec(t, a, "import os\nos._exit(1)"); res.State != run.SessionDead {
		t.Fatalf("the kernel's exit left the session %s", res.State)
	}
	waitPromised(t, b, 128*limits.MiB)
	if err := m.Delete("me", a.ID()); err != nil {
		t.Fatal(err)
	}
	c, err := m.Create(t.Context(), "me", spec())
	if err != nil {
		t.Fatalf("a session after one died: %v", err)
	}
	if err := m.Delete("me", bs.ID()); err != nil {
		t.Fatal(err)
	}
	waitPromised(t, b, 128*limits.MiB)
	if res := exec(t, c, "sum(range(10))"); res.Status != run.StatusOK {
		t.Errorf("the session admitted last: %s %q", res.Status, res.Reason)
	}
	// A start that fails gives back what it reserved.
	gone, cancel := context.WithCancel(t.Context())
	cancel()
	failed := spec()
	failed.Files = []run.File{{Name: "data.txt", Content: []byte("x")}}
	if _, err := m.Create(gone, "me", failed); err == nil {
		t.Fatal("a session started for a client already gone")
	}
	waitPromised(t, b, 128*limits.MiB)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	promised, releases := b.state()
	if promised != 0 {
		t.Errorf("promised %s after Close", promised)
	}
	for i, n := range releases {
		if n != 1 {
			t.Errorf("reservation %d released %d times, want once", i, n)
		}
	}
	if len(releases) != 4 {
		t.Errorf("%d reservations granted, want 4", len(releases))
	}
}
