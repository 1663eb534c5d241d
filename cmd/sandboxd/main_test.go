package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/sandboxd/sandboxd/internal/mcpserver"
	"github.com/sandboxd/sandboxd/internal/session"
)

// help returns what `sandboxd ARGS` prints.
func help(t *testing.T, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	root := rootCommand()
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		t.Fatalf("sandboxd %s: %v", strings.Join(args, " "), err)
	}
	return out.String()
}

// registeredTools lists the tools a client of the MCP server sees, with
// the session tools (sandboxd always has sessions).
func registeredTools(t *testing.T) []string {
	t.Helper()
	m := session.NewManager(t.Context(), session.Config{Replica: "test"})
	t.Cleanup(func() { m.Close() })
	st, ct := mcp.NewInMemoryTransports()
	ss, err := mcpserver.New(nil, "test", m).Connect(t.Context(), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ss.Close() })
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, nil).Connect(t.Context(), ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	res, err := cs.ListTools(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range res.Tools {
		names = append(names, tool.Name)
	}
	if len(names) < 9 {
		t.Fatalf("the MCP server registers only %v", names)
	}
	return names
}

// TestHelpListsEveryMCPTool: the help of sandboxd and of sandboxd mcp names
// every tool the MCP server registers.
func TestHelpListsEveryMCPTool(t *testing.T) {
	tools := registeredTools(t)
	for _, args := range [][]string{{"--help"}, {"mcp", "--help"}} {
		out := help(t, args...)
		for _, name := range tools {
			if !strings.Contains(out, "  "+name+" ") {
				t.Errorf("sandboxd %s does not list the MCP tool %s:\n%s", strings.Join(args, " "), name, out)
			}
		}
	}
}

// TestHelpSaysWhatServeOffers: each thing sandboxd serve serves is named
// in its help, and in the one-line summary sandboxd --help shows.
func TestHelpSaysWhatServeOffers(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"serve", "--help"}, []string{"/v1/runs", "/v1/runtimes", "/api/v2/execute", "/api/v2/runtimes",
			"/v1/sessions", "JavaScript", "/mcp", "/metrics", "/healthz", "/readyz", "/openapi.json"}},
		{[]string{"--help"}, []string{"runs", "Piston", "sessions", "/mcp", "metrics"}},
	} {
		out := help(t, tc.args...)
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("sandboxd %s does not mention %q", strings.Join(tc.args, " "), w)
			}
		}
	}
}
