package tests

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/testenv"
)

// TestPistonClient drives the daemon's Piston v2 endpoints with the real
// npm package piston-client, unchanged (tests/piston/piston.mjs): runtimes,
// execute with stdin and args, exit codes, a timeout as SIGKILL, a C
// compile, an unknown language's {message}. piston-client sends no token,
// so the daemon has none.
func TestPistonClient(t *testing.T) {
	requireDaemon(t)
	node, err := exec.LookPath("node")
	if err != nil {
		testenv.MissingNPMClient(t, "tests/piston", "no node on PATH")
	}
	script, err := filepath.Abs(filepath.Join("piston", "piston.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(script), "node_modules", "piston-client", "package.json")); err != nil {
		testenv.MissingNPMClient(t, "tests/piston", "tests/piston/node_modules/piston-client is missing")
	}
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
