package isolate

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
)

// holdRunner is a program that waits for code on its control pipe (fd 3)
// and runs it: the shape of a warm sandbox.
const holdRunner = `import os, sys
os.close(4)
code = os.read(3, 1 << 20).decode()
exec(compile(code, "main.py", "exec"), {"__name__": "__main__"})
`

func startHeld(t *testing.T, r *Runner, l limits.Limits) (*HeldProcess, *Workspace) {
	t.Helper()
	ws, err := r.NewWorkspace(l.Tmpfs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	p, err := r.StartHeld(t.Context(), ws, Exec{Argv: []string{"/usr/bin/python3", "-c", holdRunner}, Env: []string{"PATH=/usr/bin"}, Limits: l})
	if err != nil {
		t.Fatal(err)
	}
	return p, ws
}

// TestHeldProcess: a held sandbox's clock starts at activation, its CPU
// time excludes the start-up, and the limits given at activation apply.
func TestHeldProcess(t *testing.T) {
	r := requireRunner(t)
	start := limits.Defaults()
	start.Memory = 512 * limits.MiB

	t.Run("clock starts at activation", func(t *testing.T) {
		p, _ := startHeld(t, r, start)
		time.Sleep(1200 * time.Millisecond) // longer than the run's timeout
		l := limits.Defaults()
		l.Timeout = limits.Duration(time.Second)
		var out strings.Builder
		if err := p.Activate(t.Context(), Activation{Limits: l, Stream: run.Stream{Stdout: &out}, Control: []byte("print('warm', flush=True)")}); err != nil {
			t.Fatal(err)
		}
		res, err := p.Wait()
		if err != nil || res.Status != run.StatusOK || string(res.Stdout) != "warm\n" || out.String() != "warm\n" {
			t.Fatalf("%v %s %q %q", err, res.Status, res.Stdout, out.String())
		}
		if res.WallTime > time.Second || res.CPUTime > 500*time.Millisecond {
			t.Errorf("wall %v cpu %v count the time before activation", res.WallTime, res.CPUTime)
		}
	})
	t.Run("limits from activation", func(t *testing.T) {
		p, _ := startHeld(t, r, start)
		l := limits.Defaults()
		l.Memory = 64 * limits.MiB
		code := "x=[]\nwhile True: x.append(bytearray(16<<20))"
		if err := p.Activate(t.Context(), Activation{Limits: l, Control: []byte(code)}); err != nil {
			t.Fatal(err)
		}
		res, _ := p.Wait()
		if res.Status != run.StatusMemoryLimit || res.PeakMemory > 72<<20 {
			t.Fatalf("status %s peak %d: the 64MiB limit given at activation did not hold", res.Status, res.PeakMemory)
		}
	})
	t.Run("meminfo from activation", func(t *testing.T) {
		p, ws := startHeld(t, r, start)
		l := limits.Defaults()
		l.Memory = 80 * limits.MiB
		code := "print([l for l in open('/proc/meminfo') if l.startswith('MemTotal:')][0].split()[1])"
		if err := p.Activate(t.Context(), Activation{Limits: l, Control: []byte(code)}); err != nil {
			t.Fatal(err)
		}
		res, _ := p.Wait()
		if got := strings.TrimSpace(string(res.Stdout)); got != "81920" {
			t.Errorf("MemTotal inside is %q kB, want the run's 80 MiB (81920 kB), not the pool's 512 MiB; stderr %s", got, res.Stderr)
		}
		if ents, err := os.ReadDir(ws.r.mounts.path(ws.gen)); err != nil || len(ents) != 1 || ents[0].Name() != genDevDir {
			t.Errorf("the sandbox's /proc files are left after it ended: %v %v", ents, err)
		}
	})
	t.Run("rlimits from activation", func(t *testing.T) {
		p, _ := startHeld(t, r, start)
		l := limits.Defaults()
		l.OpenFiles = 32
		if err := p.Activate(t.Context(), Activation{Limits: l, Control: []byte("import resource; print(resource.getrlimit(resource.RLIMIT_NOFILE))")}); err != nil {
			t.Fatal(err)
		}
		res, _ := p.Wait()
		if strings.TrimSpace(string(res.Stdout)) != "(32, 32)" {
			t.Fatalf("RLIMIT_NOFILE %q, want (32, 32)", res.Stdout)
		}
	})
	t.Run("canceled before activation", func(t *testing.T) {
		ws, err := r.NewWorkspace(start.Tmpfs)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		ctx, cancel := context.WithCancel(t.Context())
		p, err := r.StartHeld(ctx, ws, Exec{Argv: []string{"/usr/bin/python3", "-c", holdRunner}, Limits: start})
		if err != nil {
			t.Fatal(err)
		}
		cancel()
		select {
		case <-p.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("a held process outlived its context")
		}
	})
}

// TestActivationOutlivesStartContext: once activated, a HeldProcess is bound
// by the activation's context; the start's may end right after (a
// session's does) without killing it, however the supervisor's select
// orders the two.
func TestActivationOutlivesStartContext(t *testing.T) {
	r := requireRunner(t)
	l := limits.Defaults()
	for i := range 20 {
		ws, err := r.NewWorkspace(l.Tmpfs)
		if err != nil {
			t.Fatal(err)
		}
		startCtx, cancel := context.WithCancel(t.Context())
		p, err := r.StartHeld(startCtx, ws, Exec{Argv: []string{"/usr/bin/python3", "-c", holdRunner}, Limits: l})
		if err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		err = p.Activate(t.Context(), Activation{Limits: l, Stream: run.Stream{Stdout: &out}, Control: []byte("import time\ntime.sleep(0.05)\nprint('lived')")})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		res, err := p.Wait()
		ws.Close()
		if err != nil || res.Status != run.StatusOK || out.String() != "lived\n" {
			t.Fatalf("attempt %d: %v: status %s reason %q output %q", i, err, res.Status, res.Reason, out.String())
		}
	}
}
