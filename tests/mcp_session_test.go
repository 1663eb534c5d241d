package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/testenv"
)

// The MCP session tests drive the session tools (create_session,
// run_in_session, upload_file, download_file, close_session) with the real
// npm client from tests/mcp/sessions.mjs, over stdio and streamable HTTP,
// as tests/mcp_test.go does run_code. Sessions are the process backend's
// own sandboxes: the state dir's leak check covers them too.

// requireSessionsClient is requireMCPClient for sessions.mjs. Without
// matplotlib on the host the plot cell draws its PNG itself (the script
// says so in its output).
func requireSessionsClient(t *testing.T) (node, script string) {
	t.Helper()
	node, client := requireMCPClient(t)
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		testenv.MissingFile(t, "/usr/bin/python3") // the session kernel
	}
	if _, err := os.Stat("/usr/lib/python3/dist-packages/matplotlib"); err != nil {
		t.Setenv("SANDBOXD_MCP_NO_MATPLOTLIB", "1")
	}
	return node, filepath.Join(filepath.Dir(client), "sessions.mjs")
}

// TestMCPSessionsNodeClientStdio: the session tools of `sandboxd mcp`,
// spawned by the npm client over stdio.
func TestMCPSessionsNodeClientStdio(t *testing.T) {
	node, script := requireSessionsClient(t)
	requireDaemon(t)
	stateDir := mcpStateDir(t)
	runNodeClient(t, node, script, "stdio", sandboxd, "--state-dir", stateDir)
	// The script leaves a session open: `sandboxd mcp` must end it when its
	// client goes (mcpStateDir's cleanup finds any remains), and exit.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var left []hostProc
		for _, pid := range allPids() {
			if p, ok := readProc(pid); ok && strings.HasPrefix(p.cmdline, sandboxd+" mcp ") && strings.Contains(p.cmdline, stateDir) {
				left = append(left, p)
			}
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("`sandboxd mcp` still runs 10s after its client closed: %v", left)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestMCPSessionsNodeClientHTTP: the session tools of `sandboxd serve` at
// /mcp, with a token, over streamable HTTP. The session the script leaves
// open is closed when the daemon stops, before the state dir's check.
func TestMCPSessionsNodeClientHTTP(t *testing.T) {
	node, script := requireSessionsClient(t)
	requireDaemon(t)
	token := "mcp-" + randomHex(16)
	d := startDaemon(t, daemonConfig{stateDir: mcpStateDir(t), token: token})
	runNodeClient(t, node, script, "http", d.url+"/mcp", token)
}
