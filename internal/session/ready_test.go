package session

import (
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/admission"
	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
)

// waitReady waits until m keeps n kernels started ahead.
func waitReady(t *testing.T, m *Manager, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for m.ready.len() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d ready kernels after 60s, want %d", m.ready.len(), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// create makes a session of spec for owner "o", and checks it was started
// ahead (or not) as ahead says.
func create(t *testing.T, m *Manager, spec *run.SessionSpec, ahead bool) *Session {
	t.Helper()
	s, err := m.Create(t.Context(), "o", spec)
	if err != nil {
		t.Fatal(err)
	}
	if s.ahead != ahead {
		t.Fatalf("session started ahead: %v, want %v", s.ahead, ahead)
	}
	return s
}

// memoryLimit reads the memory limit of a session's cgroup from the host.
func memoryLimit(t *testing.T, s *Session) string {
	t.Helper()
	var found string
	for _, root := range []string{"/sys/fs/cgroup/memory", "/sys/fs/cgroup"} {
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || found != "" {
				return fs.SkipDir
			}
			if d.IsDir() && strings.HasPrefix(d.Name(), s.RunID()+"-") {
				for _, f := range []string{"memory.limit_in_bytes", "memory.max"} {
					if b, err := os.ReadFile(filepath.Join(p, f)); err == nil {
						found = strings.TrimSpace(string(b))
						return fs.SkipAll
					}
				}
			}
			return nil
		})
		if found != "" {
			return found
		}
	}
	t.Fatalf("no memory cgroup of run %s", s.RunID())
	return ""
}

// freshCells are run in a kernel started ahead and in one started cold:
// every answer must be the same.
var freshCells = []string{
	"import os; sorted(os.listdir('.')), os.getcwd()",
	"sorted((k, v) for k, v in os.environ.items())",
	"import resource; [resource.getrlimit(r) for r in (resource.RLIMIT_NOFILE, resource.RLIMIT_FSIZE, resource.RLIMIT_CPU, resource.RLIMIT_STACK)]",
	"[l.split()[1] for l in open('/proc/meminfo') if l.startswith('MemTotal:')]",
	"len(os.sched_getaffinity(0)), os.getuid(), os.getgid(), open('/proc/self/cgroup').read().count('\\n')",
	"x = 1\nx + 1",
	"1/0",
	"open('data.txt').read()",
}

// TestReadyKernelIsFresh: a session that takes a kernel started ahead
// answers every cell as a session started cold with the same spec does:
// workspace, environment, rlimits, meminfo, errors, its input files; and
// its cgroup has the session's memory limit, not the one it started with.
// Then a memory limit and a timeout act on it as on a cold one.
func TestReadyKernelIsFresh(t *testing.T) {
	ready := newManager(t, Config{Ready: 1})
	cold := newManager(t, Config{})
	waitReady(t, ready, 1)
	spec := &run.SessionSpec{
		Env:    map[string]string{"FOO": "bar", "OMP_NUM_THREADS": "3"},
		Limits: limits.Limits{Memory: 96 * limits.MiB, OpenFiles: 32, FileSize: 8 * limits.MiB, Timeout: limits.Duration(time.Second)},
		Files:  []run.File{{Name: "data.txt", Content: []byte("input")}},
	}
	a := create(t, ready, spec, true)
	b := create(t, cold, spec, false)
	for _, code := range freshCells {
		ra, rb := exec(t, a, code), exec(t, b, code)
		if ra.Status != rb.Status || ra.Result["text/plain"] != rb.Result["text/plain"] || string(ra.Stdout) != string(rb.Stdout) ||
			(ra.Error == nil) != (rb.Error == nil) || ra.Error != nil && *ra.Error != *rb.Error {
			t.Errorf("cell %q:\n ahead %s %q %+v\n cold  %s %q %+v", code, ra.Status, ra.Result["text/plain"], ra.Error, rb.Status, rb.Result["text/plain"], rb.Error)
		}
	}
	if got, want := memoryLimit(t, a), strconv.Itoa(96<<20); got != want {
		t.Errorf("cgroup memory limit %s, want %s", got, want)
	}
	if res := exec(t, a, "import time; time.sleep(5)"); res.Status != run.StatusTimeout {
		t.Errorf("past the 1s timeout: %s (%s)", res.Status, res.Reason)
	}
	res, err := a.Exec(t.Context(), run.CellRequest{Code: "x = []\nwhile True: x.append(bytearray(8 << 20))", Timeout: limits.Duration(20 * time.Second)}, run.CellStream{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != run.StatusMemoryLimit || res.State != run.SessionDead {
		t.Errorf("past the 96MiB limit: %s %s (%s)", res.Status, res.State, res.Reason)
	}
}

// TestReadyColdSpecs: a spec a kernel started ahead cannot serve as a
// fresh start would starts cold: another tmpfs size, a variable read at
// the interpreter's start-up, another runtime.
func TestReadyColdSpecs(t *testing.T) {
	m := newManager(t, Config{Ready: 1})
	waitReady(t, m, 1)
	for _, spec := range []*run.SessionSpec{
		{Limits: limits.Limits{Tmpfs: 32 * limits.MiB}},
		{Env: map[string]string{"PYTHONHASHSEED": "0"}},
		{Env: map[string]string{"LD_PRELOAD": "/nonexistent.so"}},
		{Env: map[string]string{"LANG": "C"}},
	} {
		s := create(t, m, spec, false)
		if err := m.Delete("o", s.ID()); err != nil {
			t.Fatal(err)
		}
	}
	if m.ready.len() != 1 {
		t.Errorf("%d ready kernels, want the 1 no spec could take", m.ready.len())
	}
	if _, err := os.Stat("/usr/bin/node"); err == nil {
		s := create(t, m, &run.SessionSpec{Runtime: "javascript"}, false)
		_ = m.Delete("o", s.ID())
	}
}

// TestReadyTakesShareNothing: two sessions taken from kernels started
// ahead have their own sandboxes: a file or a variable of one is not in
// the other, nor their /proc boot_id, and each is refilled.
func TestReadyTakesShareNothing(t *testing.T) {
	m := newManager(t, Config{Ready: 2})
	waitReady(t, m, 2)
	a := create(t, m, &run.SessionSpec{}, true)
	b := create(t, m, &run.SessionSpec{}, true)
	if a.RunID() == b.RunID() {
		t.Fatalf("both sessions in run %s", a.RunID())
	}
	exec(t, a, "open('mine', 'w').write('a'); open('/tmp/mine', 'w').write('a'); secret = 42")
	res := exec(t, b, "import os; os.path.exists('mine'), os.path.exists('/tmp/mine'), 'secret' in globals()")
	if res.Result["text/plain"] != "(False, False, False)" {
		t.Errorf("the second session sees the first's: %q", res.Result["text/plain"])
	}
	id := "open('/proc/sys/kernel/random/boot_id').read()"
	if ra, rb := exec(t, a, id), exec(t, b, id); ra.Result["text/plain"] == rb.Result["text/plain"] {
		t.Errorf("both sessions have boot_id %s", ra.Result["text/plain"])
	}
	waitReady(t, m, 2)
}

// TestReadyLeaveNothing: a Manager closed while it keeps kernels started
// ahead removes them: no workspace mounted, no process of theirs left.
func TestReadyLeaveNothing(t *testing.T) {
	m := newManager(t, Config{Ready: 2})
	waitReady(t, m, 2)
	m.ready.mu.Lock()
	var ids []string
	for _, k := range m.ready.kernels {
		ids = append(ids, k.ws.ID())
	}
	var done []<-chan struct{}
	for _, k := range m.ready.kernels {
		done = append(done, k.proc.Done())
	}
	m.ready.mu.Unlock()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	for _, d := range done {
		select {
		case <-d:
		default:
			t.Error("a ready kernel's sandbox is still running after Close")
		}
	}
	for _, id := range ids {
		if workspaceMounted(t, id) {
			t.Errorf("the workspace of ready kernel %s is still mounted", id)
		}
	}
}

// TestReadyReservesMemory: each kernel kept ahead holds its memory limit in
// the daemon's budget, a session that takes one holds its own in its place,
// and kernels kept ahead give way to a session the budget has no room for.
func TestReadyReservesMemory(t *testing.T) {
	var refused atomic.Int32
	budget := admission.NewBudget(512*limits.MiB, func() { refused.Add(1) })
	m := newManager(t, Config{Ready: 2, Memory: budget})
	waitReady(t, m, 2)
	if got := budget.Promised(); got != 512*limits.MiB {
		t.Fatalf("two ready kernels hold %s of the budget, want 512MiB", got)
	}
	a := create(t, m, &run.SessionSpec{Limits: limits.Limits{Memory: 128 * limits.MiB}}, true)
	if got := budget.Promised(); got != 384*limits.MiB {
		t.Errorf("a session of 128MiB and a ready kernel hold %s, want 384MiB", got)
	}
	// The filler retries against the full budget: not a refusal of
	// anybody's work, so not counted as one.
	time.Sleep(2 * readyRetry)
	if n := refused.Load(); n != 0 {
		t.Errorf("the budget counted %d refusals of the filler's", n)
	}
	// Cold (another tmpfs size), 384MiB: the ready kernel left (and the
	// one refilling, if it got there) gives way.
	b := create(t, m, &run.SessionSpec{Limits: limits.Limits{Memory: 384 * limits.MiB, Tmpfs: 32 * limits.MiB}}, false)
	if got := budget.Promised(); got != 512*limits.MiB {
		t.Errorf("sessions of 128MiB and 384MiB hold %s, want 512MiB", got)
	}
	_ = m.Delete("o", a.ID())
	_ = m.Delete("o", b.ID())
	waitReady(t, m, 2)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if got := budget.Promised(); got != 0 {
		t.Errorf("%s of the budget held after Close", got)
	}
}
