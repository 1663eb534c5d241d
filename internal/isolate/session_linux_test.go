package isolate

import (
	"io"
	"strings"
	"testing"

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
