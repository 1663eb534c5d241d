package tests

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The MCP interoperability tests drive sandboxd's MCP server with the real
// npm client, @modelcontextprotocol/sdk, from tests/mcp/client.mjs: over
// stdio (the script spawns `sandboxd mcp`) and over streamable HTTP at /mcp
// of `sandboxd serve`. The script prints one "ok - ..." or "not ok - ..."
// line per check and exits 1 if any failed. `npm ci --prefix tests/mcp`
// installs the client (scripts/test does).
//
// Like the API tests, neither runs in parallel with another test: a live run
// of one would read as a leak to another test's check.

// requireMCPClient stops the test unless node and the installed MCP npm
// client are at hand, and returns node's path and the script's.
func requireMCPClient(t *testing.T) (node, script string) {
	t.Helper()
	node, dir := requireNPMClient(t, "mcp", "@modelcontextprotocol/sdk")
	return node, filepath.Join(dir, "client.mjs")
}

// mcpStateDir makes a state directory under /run for one MCP test. Its
// cleanup (registered before any daemon's, so it runs after they stopped)
// fails the test if a run left anything behind, and removes it when clean.
func mcpStateDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/run", "sandboxd-mcptest-")
	if err != nil {
		t.Fatal(err)
	}
	// 0711 as sandboxd makes its own: the sandbox's uids only traverse.
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if left := waitAPILeaks(dir, 5*time.Second); len(left) > 0 {
			t.Errorf("after the MCP server stopped, its runs left state behind (kept %s for inspection):", dir)
			for _, l := range left {
				t.Errorf("  - %s", l)
			}
			return
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove state dir: %v", err)
		}
	})
	return dir
}

// runNodeClient runs a node script of the suite (an npm client driving the
// daemon) with args and fails the test with its output unless every check
// passed. The script bounds each of its calls; this bounds the whole.
func runNodeClient(t *testing.T, node, script string, args ...string) {
	t.Helper()
	name := filepath.Base(script) + " " + args[0]
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, append([]string{script}, args...)...)
	cmd.Dir = filepath.Dir(script)
	cmd.Env = daemonEnv()
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("node %s did not finish within 4m (killed); output:\n%s", name, tail(out.Bytes()))
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		t.Logf("node %s:\n%s", name, out.String())
	case errors.As(err, &ee):
		t.Fatalf("node %s exited %d; output:\n%s", name, ee.ExitCode(), tail(out.Bytes()))
	default:
		t.Fatalf("start node: %v", err)
	}
}

// TestMCPNodeClientStdio: an agent host's view of `sandboxd mcp`, spawned
// by the npm client over stdio.
func TestMCPNodeClientStdio(t *testing.T) {
	node, script := requireMCPClient(t)
	requireDaemon(t)
	stateDir := mcpStateDir(t)
	runNodeClient(t, node, script, "stdio", sandboxd, "--state-dir", stateDir)
	// The client closed the server's stdin and signalled it: no `sandboxd
	// mcp` of this test may outlive it.
	mcpServers := func() []hostProc {
		var ps []hostProc
		for _, pid := range allPids() {
			if p, ok := readProc(pid); ok && strings.HasPrefix(p.cmdline, sandboxd+" mcp ") && strings.Contains(p.cmdline, stateDir) {
				ps = append(ps, p)
			}
		}
		return ps
	}
	deadline := time.Now().Add(10 * time.Second)
	for left := mcpServers(); len(left) > 0; left = mcpServers() {
		if time.Now().After(deadline) {
			t.Errorf("`sandboxd mcp` still runs 10s after its client closed: %v", left)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestMCPNodeClientHTTP: the npm client over streamable HTTP against
// `sandboxd serve` with a token; /mcp without it is refused.
func TestMCPNodeClientHTTP(t *testing.T) {
	node, script := requireMCPClient(t)
	requireDaemon(t)
	token := "mcp-" + randomHex(16)
	d := startDaemon(t, daemonConfig{stateDir: mcpStateDir(t), token: token})

	t.Run("unauthenticated", func(t *testing.T) {
		// A real initialize request, so that only the token can be what
		// is refused.
		initialize := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"mcp_test","version":"1"}}}`
		c := &http.Client{Timeout: 30 * time.Second}
		post := func(auth string) (*http.Response, []byte) {
			t.Helper()
			req, err := http.NewRequest("POST", d.url+"/mcp", strings.NewReader(initialize))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("POST /mcp: %v", err)
			}
			defer resp.Body.Close()
			var b bytes.Buffer
			_, _ = b.ReadFrom(resp.Body)
			return resp, b.Bytes()
		}
		for _, tc := range []struct{ name, auth string }{
			{"no Authorization", ""},
			{"a wrong token", "Bearer wrong-" + token},
			{"the token without Bearer", token},
		} {
			resp, body := post(tc.auth)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("POST /mcp (initialize) with %s: %s, want 401 Unauthorized; body:\n%s", tc.name, resp.Status, tail(body))
			}
		}
		// The same request with the token is served: the 401s above are
		// the token's doing, not a malformed request's.
		if resp, body := post("Bearer " + token); resp.StatusCode != http.StatusOK {
			t.Errorf("POST /mcp (initialize) with the token: %s, want 200; body:\n%s", resp.Status, tail(body))
		}
	})

	t.Run("node client", func(t *testing.T) {
		runNodeClient(t, node, script, "http", d.url+"/mcp", token)
	})
}
