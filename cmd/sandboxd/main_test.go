package main

import (
	"bytes"
	"strconv"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spf13/pflag"

	"github.com/sandboxd/sandboxd/internal/limits"
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
	ss, err := mcpserver.New(nil, nil, "test", m).Connect(t.Context(), st, nil)
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

// TestFlagDefaults: each limit flag of serve and mcp shows its default once,
// from limits.DefaultCeiling() or limits.Defaults(), and holds zero when
// not given (apply merges it); no flag shows a phrase as its placeholder.
func TestFlagDefaults(t *testing.T) {
	c, d := limits.DefaultCeiling(), limits.Defaults()
	want := map[string]string{
		"max-timeout": c.Timeout.String(), "max-cpu-time": c.CPUTime.String(), "max-memory": c.Memory.String(),
		"max-pids": strconv.Itoa(c.Pids), "max-output": c.Output.String(), "max-tmpfs": c.Tmpfs.String(),
		"default-timeout": d.Timeout.String(), "default-memory": d.Memory.String(),
	}
	for _, cmd := range rootCommand().Commands() {
		if cmd.Name() != "serve" && cmd.Name() != "mcp" {
			continue
		}
		fl := cmd.Flags()
		for name, def := range want {
			f := fl.Lookup(name)
			if f == nil {
				t.Errorf("%s has no --%s", cmd.Name(), name)
				continue
			}
			if f.DefValue != def {
				t.Errorf("%s --%s: help shows default %q, want %q", cmd.Name(), name, f.DefValue, def)
			}
			if v := f.Value.String(); v != "0" && v != "0s" && v != "0B" {
				t.Errorf("%s --%s: not given, it holds %q, want zero", cmd.Name(), name, v)
			}
		}
		fl.VisitAll(func(f *pflag.Flag) {
			if name, _ := pflag.UnquoteUsage(f); strings.ContainsAny(name, " \t") {
				t.Errorf("%s --%s: placeholder %q", cmd.Name(), f.Name, name)
			}
		})
		for _, line := range strings.Split(fl.FlagUsages(), "\n") {
			if strings.Count(line, "(default") > 1 || strings.Contains(line, "[default") {
				t.Errorf("%s: more than one default: %q", cmd.Name(), line)
			}
		}
	}
}
