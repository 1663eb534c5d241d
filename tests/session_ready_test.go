package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// waitRunDirs waits until the daemon's state dir holds n run directories
// (a session's, or a kernel's started ahead).
func waitRunDirs(t *testing.T, d *daemon, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ents, _ := os.ReadDir(filepath.Join(d.stateDir, "runs"))
		if len(ents) == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d run directories after 60s, want %d", len(ents), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSessionReadyKernels: a daemon keeping two Python kernels started
// ahead gives one to a new session, which runs its cells, refills, and
// leaves nothing behind when it stops with kernels still waiting: no run
// directory, mount, cgroup or process (newStateDir's cleanup checks).
func TestSessionReadyKernels(t *testing.T) {
	requireSandbox(t)
	d := startDaemon(t, daemonConfig{args: []string{"--session-ready", "2"}})
	waitRunDirs(t, d, 2)
	info := d.createSession(t, map[string]any{"env": map[string]string{"FOO": "bar"}})
	// The log reaches the test through a pipe: it may lag the answer.
	for end := time.Now().Add(5 * time.Second); !strings.Contains(d.log.String(), "ahead=true") && time.Now().Before(end); {
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(d.log.String(), "ahead=true") {
		t.Errorf("the session did not take a kernel started ahead; log:\n%s", tail([]byte(d.log.String())))
	}
	res := d.okCell(t, info.ID, "import os; os.environ['FOO'], sorted(os.listdir('.'))")
	if got := res.Result["text/plain"]; got != "('bar', ['.sandboxd'])" && got != "('bar', [])" {
		t.Errorf("cell answered %s", got)
	}
	waitRunDirs(t, d, 3)
	d.stop(t, 10*time.Second)
}
