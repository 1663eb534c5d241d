package session

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/testenv"
)

// workspaceMounted reports whether the workspace tmpfs of the run id is
// still mounted, in any mount namespace of this process.
func workspaceMounted(t *testing.T, id string) bool {
	t.Helper()
	return strings.Contains(testenv.Mountinfo("/proc/self/task/*"), "/"+id+"/work ")
}

// fillMiB is how much each case writes into its session's workspace.
const fillMiB = 256

// TestDeadSessionFreesWorkspace: a session whose kernel dies, however it
// dies, or that is deleted, gives its workspace's memory back at once:
// Shmem falls by about what the session wrote and the tmpfs is unmounted.
// A dead session's file requests then say that it died, and why.
func TestDeadSessionFreesWorkspace(t *testing.T) {
	cases := []struct {
		name string
		// end ends the session after its workspace is full.
		end    func(t *testing.T, m *Manager, s *Session)
		reason string
	}{
		{"the kernel exits", func(t *testing.T, m *Manager, s *Session) {
			exec(t, s, "import os\nos._exit(3)")
		}, "code 3"},
		{"the kernel kills itself", func(t *testing.T, m *Manager, s *Session) {
			exec(t, s, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
		}, "SIGKILL"},
		{"the kernel dies between cells", func(t *testing.T, m *Manager, s *Session) {
			exec(t, s, "import os, threading, time\nthreading.Thread(target=lambda: (time.sleep(0.2), os._exit(5))).start()")
		}, "code 5"},
		{"a cell passes the memory limit", func(t *testing.T, m *Manager, s *Session) {
			exec(t, s, "b = b'a' * (400 << 20)")
		}, "memory limit"},
		{"the session is deleted", func(t *testing.T, m *Manager, s *Session) {
			if err := m.Delete("me", s.ID()); err != nil {
				t.Fatal(err)
			}
		}, "closed"},
	}
	m := newManager(t, Config{})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := m.Create(t.Context(), "me", &run.SessionSpec{Limits: limits.Limits{Memory: 384 * limits.MiB, Tmpfs: 320 * limits.MiB, FileSize: 300 * limits.MiB}})
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = m.Delete("me", s.ID()) }()
			before := testenv.Shmem(t)
			fill := "with open('fill.bin', 'wb') as f:\n    for _ in range(" + strconv.Itoa(fillMiB) + "):\n        f.write(b'x' * (1 << 20))"
			if res := exec(t, s, fill); res.Status != run.StatusOK {
				t.Fatalf("filling the workspace: %s %q %+v", res.Status, res.Reason, res.Error)
			}
			full := testenv.Shmem(t)
			t.Logf("the workspace took %d MiB of Shmem", (full-before)>>20)
			if full-before < fillMiB<<20*3/4 {
				t.Fatalf("writing %d MiB into the workspace raised Shmem by %d MiB only", fillMiB, (full-before)>>20)
			}
			ended := time.Now()
			c.end(t, m, s)
			freed, took := int64(0), time.Duration(0)
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				freed, took = full-testenv.Shmem(t), time.Since(ended)
				if freed >= fillMiB<<20*3/4 || time.Now().After(deadline) {
					break
				}
			}
			t.Logf("%d MiB of Shmem freed %s after the end", freed>>20, took.Round(time.Millisecond))
			if freed < fillMiB<<20*3/4 {
				t.Fatalf("the session ended but only %d MiB of its %d MiB workspace were freed after %s", freed>>20, fillMiB, took)
			}
			if workspaceMounted(t, s.RunID()) {
				t.Errorf("the workspace of run %s is still mounted", s.RunID())
			}
			_, _, err = s.ListFiles(".", 10)
			if !errors.Is(err, ErrDead) || !strings.Contains(err.Error(), c.reason) {
				t.Errorf("listing a dead session's files: %v; want ErrDead saying %q", err, c.reason)
			}
			if info := s.Info(); info.State != run.SessionDead || !strings.Contains(info.Reason, c.reason) {
				t.Errorf("the dead session: state %s reason %q", info.State, info.Reason)
			}
		})
	}
}
