package session

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/errdefs"
	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/testenv"
)

// leftovers lists what of session s remains on the host: its run
// directory, mounts, cgroups and processes.
func leftovers(t *testing.T, id string) []string {
	t.Helper()
	var out []string
	for _, line := range strings.Split(testenv.Mountinfo("/proc/self/task/*"), "\n") {
		if strings.Contains(line, "/runs/"+id+"/") {
			out = append(out, "mount: "+line)
		}
	}
	cgs, _ := filepath.Glob("/sys/fs/cgroup/*/sandboxd/" + id + "*")
	cg2, _ := filepath.Glob("/sys/fs/cgroup/sandboxd/" + id + "*")
	for _, c := range append(cgs, cg2...) {
		out = append(out, "cgroup: "+c)
	}
	return out
}

func TestQuotasAndOwners(t *testing.T) {
	m := newManager(t, Config{MaxSessions: 3, MaxPerOwner: 2})
	a1, err := m.Create(t.Context(), "alice", &run.SessionSpec{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Create(t.Context(), "alice", &run.SessionSpec{}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Create(t.Context(), "alice", &run.SessionSpec{}); !errors.Is(err, ErrTooMany) {
		t.Errorf("third of alice's sessions: %v", err)
	}
	if _, err := m.Create(t.Context(), "bob", &run.SessionSpec{}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Create(t.Context(), "carol", &run.SessionSpec{}); !errors.Is(err, ErrTooMany) {
		t.Errorf("fourth session of the daemon: %v", err)
	}
	// Bob cannot find, run in or delete Alice's session.
	if _, err := m.Get("bob", a1.ID()); !errors.Is(err, ErrNotFound) {
		t.Errorf("bob got alice's session: %v", err)
	}
	if err := m.Delete("bob", a1.ID()); !errors.Is(err, ErrNotFound) {
		t.Errorf("bob deleted alice's session: %v", err)
	}
	if n := len(m.List("bob")); n != 1 {
		t.Errorf("bob lists %d sessions", n)
	}
	// Another replica's id says where it lives.
	var other *ElsewhereError
	if _, err := m.Get("alice", "replica-b-"+strings.Repeat("a", 26)); !errors.As(err, &other) || other.Replica != "replica-b" || !errors.Is(err, ErrNotFound) {
		t.Errorf("foreign id: %v", err)
	}
	if _, err := m.Get("alice", "my-session"); errors.As(err, &other) || !errors.Is(err, ErrNotFound) {
		t.Errorf("a made-up id: %v", err)
	}
	if !strings.HasPrefix(a1.ID(), "test-") {
		t.Errorf("id %q does not carry the replica", a1.ID())
	}
}

func TestBadSpecs(t *testing.T) {
	m := NewManager(t.Context(), Config{})
	defer m.Close()
	cases := []struct {
		name string
		spec run.SessionSpec
		is   error
	}{
		{"no kernel", run.SessionSpec{Runtime: "bash"}, ErrInvalid},
		{"unknown runtime", run.SessionSpec{Runtime: "cobol"}, nil},
		{"limit above ceiling", run.SessionSpec{Limits: limits.Limits{Memory: 1 << 50}}, limits.ErrInvalid},
		{"idle too long", run.SessionSpec{IdleTimeout: limits.Duration(48 * time.Hour)}, ErrInvalid},
		{"idle too short", run.SessionSpec{IdleTimeout: limits.Duration(time.Millisecond)}, ErrInvalid},
		{"cpu budget too large", run.SessionSpec{CPUBudget: limits.Duration(48 * time.Hour)}, ErrInvalid},
		{"cpu budget too small", run.SessionSpec{CPUBudget: limits.Duration(time.Millisecond)}, ErrInvalid},
		{"bad file", run.SessionSpec{Files: []run.File{{Name: "../x"}}}, ErrInvalid},
		{"bad env", run.SessionSpec{Env: map[string]string{"A=B": "c"}}, ErrInvalid},
	}
	for _, c := range cases {
		err := m.Check(&c.spec)
		if err == nil || (c.is != nil && !errors.Is(err, c.is)) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

// TestCeilingOwner: a limit above the ceiling is blamed on the daemon, or
// on the program that holds its sessions itself.
func TestCeilingOwner(t *testing.T) {
	for _, tc := range []struct{ owner, want string }{
		{"", "is above the server's ceiling of 4GiB"},
		{"sandboxctl", "is above the ceiling of 4GiB, the most sandboxctl allows"},
	} {
		m := NewManager(t.Context(), Config{CeilingOwner: tc.owner})
		err := m.Check(&run.SessionSpec{Limits: limits.Limits{Memory: 8 * limits.GiB}})
		m.Close()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("owner %q: Check = %v, want %q in it", tc.owner, err, tc.want)
		}
	}
}

// TestExpiryAndDeleteLeaveNothing: an idle session is reaped, a deleted
// one removed, and neither leaves a mount, cgroup or directory behind.
func TestExpiryAndDeleteLeaveNothing(t *testing.T) {
	m := newManager(t, Config{})
	idle, err := m.Create(t.Context(), "me", &run.SessionSpec{IdleTimeout: limits.Duration(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	del, err := m.Create(t.Context(), "me", &run.SessionSpec{})
	if err != nil {
		t.Fatal(err)
	}
	// A background process must go with its session too.
	exec(t, del, "import subprocess\nsubprocess.Popen(['/bin/sleep', '1000'], start_new_session=True)")
	if len(leftovers(t, del.ws.ID())) == 0 {
		t.Fatal("the leftovers check sees nothing of a live session")
	}
	if err := m.Delete("me", del.ID()); err != nil {
		t.Fatal(err)
	}
	if l := leftovers(t, del.ws.ID()); len(l) > 0 {
		t.Errorf("deleted session left %v", l)
	}
	// Its owner hears why it is gone; anyone else only that it is not.
	if _, err := m.Get("me", del.ID()); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "ended at") || !strings.HasSuffix(err.Error(), ": deleted") {
		t.Errorf("Get of a deleted session: %v; want not found, saying it ended and was deleted", err)
	}
	if _, err := m.Get("you", del.ID()); err == nil || strings.Contains(err.Error(), "deleted") {
		t.Errorf("another owner's Get of a deleted session: %v; want not found, and not why", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := m.Get("me", idle.ID()); errors.Is(err, ErrNotFound) {
			if !strings.Contains(err.Error(), "idle timeout") {
				t.Errorf("Get of an expired session: %v; want it to say idle timeout", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the idle session was not reaped")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The reaper forgets the session first, then removes it.
	for l := leftovers(t, idle.ws.ID()); len(l) > 0; l = leftovers(t, idle.ws.ID()) {
		if time.Now().After(deadline) {
			t.Fatalf("expired session left %v", l)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSessionsAreIsolated: twenty sessions running cells at once see none
// of each other's variables, files or processes.
func TestSessionsAreIsolated(t *testing.T) {
	const n = 20
	m := newManager(t, Config{MaxSessions: n, MaxPerOwner: n})
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- isolatedSession(t, m, i)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func isolatedSession(t *testing.T, m *Manager, i int) error {
	s, err := m.Create(t.Context(), "me", &run.SessionSpec{})
	if err != nil {
		return err
	}
	secret := fmt.Sprintf("secret-%d", i)
	cells := []struct{ code, want string }{
		{fmt.Sprintf("mine = %q\nopen('mine.txt', 'w').write(mine)", secret), ""},
		{"import os\nsorted(int(p) for p in os.listdir('/proc') if p.isdigit())[:2]", "[1, "},
		{"import os\n[open(f'/proc/{p}/cmdline').read() for p in os.listdir('/proc') if p.isdigit()].__len__() <= 3", "True"},
		{"import glob\n[p for d in ('/tmp', '/workspace', '/dev/shm', '/var/tmp', '/run') for p in glob.glob(d + '/**/mine.txt', recursive=True)]", "['/workspace/mine.txt']"},
		{"mine + open('mine.txt').read()", "'" + secret + secret + "'"},
	}
	for _, c := range cells {
		res, err := s.Exec(t.Context(), run.CellRequest{Code: c.code, Timeout: limits.Duration(60 * time.Second)}, run.CellStream{})
		if err != nil {
			return err
		}
		got := res.Result["text/plain"]
		if res.Status != run.StatusOK || !strings.HasPrefix(got, c.want) {
			return fmt.Errorf("session %d cell %q: %s %q %+v", i, c.code, res.Status, got, res.Error)
		}
		if strings.Contains(string(res.Stdout)+string(res.Stderr)+got, "secret-") && !strings.Contains(got, secret) {
			return fmt.Errorf("session %d saw another's secret: %q", i, got)
		}
	}
	return nil
}

// TestReplicaOf: only an id of our own shape names a replica, and the
// name is a DNS label whatever the client sent: a forwarder builds a
// peer's address from it, so nothing else may pass (no dots, colons,
// slashes or at signs that would steer it to another host).
func TestReplicaOf(t *testing.T) {
	rnd := strings.Repeat("a", idRandom)
	for _, tc := range []struct{ id, want string }{
		{"sandboxd-0-" + rnd, "sandboxd-0"},
		{"a-" + rnd, "a"},
		{strings.Repeat("r", 63) + "-" + rnd, strings.Repeat("r", 63)},
		{strings.Repeat("r", 64) + "-" + rnd, ""},
		{"-" + rnd, ""},
		{"a--" + rnd, ""},
		{"Upper-" + rnd, ""},
		{"evil.example.com-" + rnd, ""},
		{"evil:80-" + rnd, ""},
		{"user@host-" + rnd, ""},
		{"a/b-" + rnd, ""},
		{"a-" + strings.Repeat("a", idRandom-1), ""},
		{"a-" + strings.Repeat("1", idRandom), ""},
		{"my-session", ""},
	} {
		if got := ReplicaOf(tc.id); got != tc.want {
			t.Errorf("ReplicaOf(%q) = %q, want %q", tc.id, got, tc.want)
		}
	}
	// Every name a Manager makes is one ReplicaOf gives back.
	for _, host := range []string{"sandboxd-0", "Host.Example_Org", strings.Repeat("x", 80), "--", "a-" + strings.Repeat("-", 70) + "b"} {
		m := NewManager(t.Context(), Config{Replica: host})
		id := m.newID()
		m.Close()
		if got := ReplicaOf(id); got != m.Replica() || !validReplica(got) {
			t.Errorf("replica %q: id %q gives back %q", host, id, got)
		}
	}
}

// TestDrain: a draining Manager refuses new sessions with ErrDraining,
// keeps serving the ones it holds, and says when the last is gone.
func TestDrain(t *testing.T) {
	m := newManager(t, Config{})
	s, err := m.Create(t.Context(), "alice", &run.SessionSpec{})
	if err != nil {
		t.Fatal(err)
	}
	drained := m.Drain()
	if !m.Draining() {
		t.Error("Draining() is false after Drain")
	}
	if _, err := m.Create(t.Context(), "bob", &run.SessionSpec{}); !errors.Is(err, ErrDraining) || !errdefs.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), `"test" is draining`) {
		t.Errorf("a new session while draining: %v", err)
	}
	if res, err := s.Exec(t.Context(), run.CellRequest{Code: "6*7"}, run.CellStream{}); err != nil || res.Result["text/plain"] != "42" {
		t.Errorf("a cell of a held session while draining: %v %+v", err, res)
	}
	select {
	case <-drained:
		t.Fatal("drained while a session is still held")
	case <-time.After(100 * time.Millisecond):
	}
	if err := m.Delete("alice", s.ID()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-drained:
	case <-time.After(10 * time.Second):
		t.Fatal("not drained after the last session was deleted")
	}
	if again := m.Drain(); again != drained {
		t.Error("a second Drain returns another channel")
	}
}

// TestDrainEmpty: a Manager with no session is drained at once.
func TestDrainEmpty(t *testing.T) {
	m := NewManager(t.Context(), Config{})
	defer m.Close()
	select {
	case <-m.Drain():
	default:
		t.Fatal("an empty Manager is not drained at once")
	}
}

// TestGoneSaysWhy: an id of this replica that it never held names this
// replica and when it started (the session lived on an earlier run of it);
// a made-up id is just not found; the ended log keeps the last endedKept.
func TestGoneSaysWhy(t *testing.T) {
	start := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)
	m := NewManager(t.Context(), Config{Replica: "sandboxd-1", Now: func() time.Time { return start }})
	defer m.Close()
	id := "sandboxd-1-" + strings.Repeat("a", idRandom)
	_, err := m.Get("me", id)
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `replica "sandboxd-1" has held no such session of yours since it started at 2026-12-06T03:00:00Z`) || !strings.Contains(err.Error(), "restarts") {
		t.Errorf("Get of an id of this replica it never held: %v", err)
	}
	// Another owner's ended session reads as one never held: the
	// ended log tells nothing of other owners' sessions.
	m.mu.Lock()
	m.ended.add(id, endedSession{owner: "you", why: "deleted", at: start})
	m.mu.Unlock()
	if _, err2 := m.Get("me", id); err2 == nil || err2.Error() != err.Error() {
		t.Errorf("Get of another owner's ended session: %v; want the same error as for one never held: %v", err2, err)
	}
	if _, err := m.Get("me", "nope"); !errors.Is(err, ErrNotFound) || strings.Contains(err.Error(), "replica") {
		t.Errorf("Get of a made-up id: %v; want a plain not found", err)
	}

	var l endedLog
	for i := range endedKept + 10 {
		l.add(fmt.Sprint(i), endedSession{why: fmt.Sprint(i)})
	}
	if _, ok := l.get("9"); ok {
		t.Error("the ended log kept more than endedKept")
	}
	if e, ok := l.get("10"); !ok || e.why != "10" {
		t.Errorf("the ended log forgot the oldest it should keep: %v %v", e, ok)
	}
	if e, ok := l.get(fmt.Sprint(endedKept + 9)); !ok || e.why != fmt.Sprint(endedKept+9) {
		t.Errorf("the ended log lost the newest: %v %v", e, ok)
	}
	if len(l.byID) != endedKept {
		t.Errorf("the ended log holds %d, want %d", len(l.byID), endedKept)
	}
}
