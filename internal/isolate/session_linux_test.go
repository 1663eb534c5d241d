package isolate

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/cgroups/v3/cgroup1"

	"github.com/sandboxd/sandboxd/internal/limits"
)

// TestSessionLimitsFromStart: a session's rlimits are the ones it was
// started with, set by init: Activate applies nothing again.
func TestSessionLimitsFromStart(t *testing.T) {
	r := requireRunner(t)
	l := limits.Defaults()
	l.OpenFiles = 32
	ws, err := r.NewWorkspace(l.Tmpfs)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	code := "import os, resource\nos.write(4, repr(resource.getrlimit(resource.RLIMIT_NOFILE)).encode())\nos.close(4)\nos.read(3, 1)"
	sp, err := r.StartSession(t.Context(), ws, Exec{Argv: []string{"/usr/bin/python3", "-c", code}, Limits: l})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { sp.Kill(); _, _ = sp.Wait() }()
	if err := sp.Activate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := sp.Activate(t.Context()); err == nil {
		t.Error("a second Activate succeeded")
	}
	got, err := io.ReadAll(sp.Answers())
	if err != nil || strings.TrimSpace(string(got)) != "(32, 32)" {
		t.Fatalf("RLIMIT_NOFILE %q (%v), want (32, 32)", got, err)
	}
}

// cgroupFile is the path of cg's control file named v1 in its v1
// subsystem's directory, or v2 on cgroup v2.
func cgroupFile(t *testing.T, cg runCgroup, sub cgroup1.Name, v1, v2 string) string {
	switch c := cg.(type) {
	case *v1Cgroup:
		return filepath.Join(c.d.dir(sub, c.path), v1)
	case *v2Cgroup:
		return filepath.Join(c.dir, v2)
	}
	t.Fatalf("cgroup of type %T", cg)
	return ""
}

// TestSessionAheadRelimit: a session started ahead runs under the limits
// Relimit gave it, not those it was started with: its cgroup's memory
// limit, its program's rlimits (read by the program after Relimit), its
// /proc/meminfo. A tmpfs size other than the started one is refused.
func TestSessionAheadRelimit(t *testing.T) {
	r := requireRunner(t)
	start := limits.Defaults()
	start.Memory = 256 * limits.MiB
	start.OpenFiles = 64
	ws, err := r.NewWorkspace(start.Tmpfs)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	code := `import os, resource
os.read(3, 1)
mem = [l for l in open('/proc/meminfo') if l.startswith('MemTotal:')][0].split()[1]
os.write(4, repr((resource.getrlimit(resource.RLIMIT_NOFILE), mem)).encode())
os.close(4)
os.read(3, 1)`
	sp, err := r.StartSessionAhead(t.Context(), ws, Exec{Argv: []string{"/usr/bin/python3", "-c", code}, Limits: start})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { sp.Kill(); _, _ = sp.Wait() }()
	l := start
	l.Memory = 96 * limits.MiB
	l.OpenFiles = 32
	bad := l
	bad.Tmpfs = start.Tmpfs * 2
	if err := sp.Relimit(bad); err == nil {
		t.Error("Relimit changed the tmpfs size")
	}
	if err := sp.Relimit(l); err != nil {
		t.Fatal(err)
	}
	if err := sp.Activate(t.Context()); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(cgroupFile(t, sp.cg, cgroup1.Memory, "memory.limit_in_bytes", "memory.max"))
	if err != nil || strings.TrimSpace(string(got)) != strconv.Itoa(96<<20) {
		t.Errorf("cgroup memory limit %q (%v), want %d", got, err, 96<<20)
	}
	if _, err := sp.Control().Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	ans, err := io.ReadAll(sp.Answers())
	if want := fmt.Sprintf("((32, 32), '%d')", 96<<10); err != nil || strings.TrimSpace(string(ans)) != want {
		t.Fatalf("program saw %q (%v), want %s", ans, err, want)
	}
}
