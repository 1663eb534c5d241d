package isolate

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
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

// sessionFDs is the most descriptors a session may hold in the daemon for
// its life: init's status pipe, the program's stdout, stderr, control and
// answer pipes, init's pidfd (os.Process's), the run directory's lock and
// the host id slot's. They bound how many sessions one daemon keeps under
// its RLIMIT_NOFILE: 2000 of them in this project's hard limit of 20000.
const sessionFDs = 8

// TestSessionDescriptors: idle sessions hold at most sessionFDs
// descriptors each in this process; a Cut (which writes its marks through
// a write end opened for it) and an Interrupt (through a pidfd opened for
// it) leave none behind; ended sessions leave nothing at all.
func TestSessionDescriptors(t *testing.T) {
	r := requireRunner(t)
	code := `import os, signal, sys
signal.signal(signal.SIGINT, lambda *a: os.write(4, b"interrupted\n"))
while os.read(3, 1):
    sys.stdout.write("out\n"); sys.stdout.flush()
    sys.stderr.write("err\n"); sys.stderr.flush()
    os.write(4, b"done\n")`
	start := func() (*SessionProcess, *Workspace) {
		t.Helper()
		ws, err := r.NewWorkspace(limits.Defaults().Tmpfs)
		if err != nil {
			t.Fatal(err)
		}
		sp, err := r.StartSession(t.Context(), ws, Exec{Argv: []string{"/usr/bin/python3", "-c", code}, Limits: limits.Defaults()})
		if err != nil {
			ws.Close()
			t.Fatal(err)
		}
		if err := sp.Activate(t.Context()); err != nil {
			t.Fatal(err)
		}
		return sp, ws
	}
	end := func(sp *SessionProcess, ws *Workspace) {
		sp.Kill()
		_, _ = sp.Wait()
		if err := ws.Close(); err != nil {
			t.Errorf("close workspace: %v", err)
		}
	}
	// One first, so what a runner opens once (and keeps) is not counted.
	end(start())

	const n = 4
	before := openFDs(t)
	type live struct {
		sp *SessionProcess
		ws *Workspace
	}
	var sessions []live
	defer func() {
		for _, s := range sessions {
			end(s.sp, s.ws)
		}
	}()
	for range n {
		sp, ws := start()
		sessions = append(sessions, live{sp, ws})
	}
	idle := openFDs(t)
	if per := float64(len(idle)-len(before)) / n; per > sessionFDs {
		t.Errorf("an idle session holds %.1f descriptors here, want at most %d:\n%s", per, sessionFDs, strings.Join(newFDs(before, idle), "\n"))
	}

	answers := bufio.NewReader(sessions[0].sp.Answers())
	answer := func(want string) {
		t.Helper()
		line, err := answers.ReadString('\n')
		if err != nil || line != want+"\n" {
			t.Fatalf("the program answered %q (%v), want %q", line, err, want)
		}
	}
	for i := range 3 {
		sp := sessions[0].sp
		sp.SetOutput(io.Discard, io.Discard, 1<<20, nil)
		if _, err := sp.Control().Write([]byte{'x'}); err != nil {
			t.Fatal(err)
		}
		answer("done")
		out, err := sp.Cut(t.Context())
		if err != nil || string(out.Stdout) != "out\n" || string(out.Stderr) != "err\n" {
			t.Fatalf("execution %d: Cut = %q, %q, %v; want every byte of its output", i+1, out.Stdout, out.Stderr, err)
		}
		if err := sp.Interrupt(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		answer("interrupted")
	}
	if after := openFDs(t); len(after) != len(idle) {
		t.Errorf("Cut and Interrupt left descriptors behind:\n%s", strings.Join(newFDs(idle, after), "\n"))
	}

	for _, s := range sessions {
		end(s.sp, s.ws)
	}
	sessions = nil
	if after := openFDs(t); len(after) != len(before) {
		t.Errorf("ended sessions left descriptors behind:\n%s", strings.Join(newFDs(before, after), "\n"))
	}
}

// openFDs is this process's open descriptors, each with what it names.
func openFDs(t *testing.T) map[string]string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	fds := make(map[string]string, len(ents))
	for _, e := range ents {
		target, _ := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		fds[e.Name()] = target
	}
	return fds
}

// newFDs lists the descriptors in after that are not in before.
func newFDs(before, after map[string]string) []string {
	var l []string
	for fd, target := range after {
		if before[fd] != target {
			l = append(l, fd+" "+target)
		}
	}
	slices.Sort(l)
	return l
}
