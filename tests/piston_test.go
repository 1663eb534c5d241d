package tests

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestPistonClient drives the daemon's Piston v2 endpoints with the real
// npm package piston-client, unchanged (tests/piston/piston.mjs): runtimes,
// execute with stdin and args, exit codes, a timeout as SIGKILL, a C
// compile, an unknown language's {message}. piston-client sends no token,
// so the daemon has none.
func TestPistonClient(t *testing.T) {
	requireDaemon(t)
	node, dir := requireNPMClient(t, "piston", "piston-client")
	script := filepath.Join(dir, "piston.mjs")
	d := startDaemon(t, daemonConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script, d.url)
	cmd.Dir = filepath.Dir(script)
	cmd.WaitDelay = 2 * time.Second
	out, err := cmd.CombinedOutput()
	t.Logf("node piston.mjs %s:\n%s", d.url, out)
	if ctx.Err() != nil {
		t.Fatalf("the piston-client script did not finish within 2 minutes")
	}
	if err != nil {
		t.Fatalf("the piston-client script failed: %v", err)
	}
}
