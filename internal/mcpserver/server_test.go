package mcpserver

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/sandboxd/sandboxd/internal/executor"
	"github.com/sandboxd/sandboxd/internal/isolate"
	"github.com/sandboxd/sandboxd/internal/isolate/nsinit"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/runtimes"
	"github.com/sandboxd/sandboxd/internal/session"
	"github.com/sandboxd/sandboxd/internal/testenv"
)

func TestMain(m *testing.M) {
	nsinit.MaybeRun()
	os.Exit(m.Run())
}

// connect serves New(r) over the SDK's in-memory transport and returns a
// client session.
func connect(t *testing.T, r *executor.Executor) *mcp.ClientSession {
	t.Helper()
	return connectSessions(t, r, nil)
}

// connectSessions is connect with the session tools on m (nil: without).
func connectSessions(t *testing.T, x *executor.Executor, m *session.Manager) *mcp.ClientSession {
	t.Helper()
	ctx := t.Context()
	st, ct := mcp.NewInMemoryTransports()
	var r run.Runner
	var reg *runtimes.Registry
	if x != nil {
		r, reg = x, x.Runtimes()
	}
	ss, err := New(r, reg, "test", m).Connect(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ss.Close() })
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, nil).Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

func text(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

func requireExecutor(t *testing.T) *executor.Executor {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("requires root for the process backend")
	}
	state, parent := testenv.StateDir(t, "mcptest")
	x, err := executor.New(executor.Options{Isolate: isolate.Config{StateDir: state, CgroupParent: parent}})
	if err != nil {
		testenv.MissingSandbox(t, err)
	}
	t.Cleanup(func() { x.Close() })
	return x
}

func TestListTools(t *testing.T) {
	cs := connect(t, requireExecutor(t))
	res, err := cs.ListTools(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]*mcp.Tool{}
	for _, tool := range res.Tools {
		names[tool.Name] = tool
	}
	rc := names["run_code"]
	if rc == nil || names["list_runtimes"] == nil {
		t.Fatalf("tools %v", res.Tools)
	}
	schema, _ := json.Marshal(rc.InputSchema)
	// The languages come from the registry, aliases and all; limits may
	// be numbers.
	for _, want := range []string{`"language"`, `"code"`, `"timeout"`, `"memory"`, `"required":["language","code"]`, `ruby (rb)`, `c++ (cpp, cxx)`, `"type":["string","number"]`} {
		if !strings.Contains(string(schema), want) {
			t.Errorf("run_code's input schema lacks %s: %s", want, schema)
		}
	}
	if rc.OutputSchema == nil || !strings.Contains(rc.Description, "sandbox") {
		t.Errorf("run_code has no output schema or a thin description")
	}
}

// TestRunCodeStatuses calls run_code for each status a model can meet and
// checks both the text a model reads and the structured result.
func TestRunCodeStatuses(t *testing.T) {
	cs := connect(t, requireExecutor(t))
	cases := []struct {
		name    string
		args    map[string]any
		status  string
		isError bool
		text    string
	}{
		{"ok", map[string]any{"language": "python", "code": "print(6*7)"}, "ok", false, "42"},
		{"stdin and files", map[string]any{"language": "py", "code": "print(input(), open('d.txt').read())", "stdin": "in\n", "files": []map[string]string{{"name": "d.txt", "content": "data"}}}, "ok", false, "in data"},
		{"exited", map[string]any{"language": "python", "code": "import sys; sys.exit(3)"}, "exited", true, "exit status 3"},
		{"signaled", map[string]any{"language": "python", "code": "import os; os.abort()"}, "signaled", true, "SIGABRT"},
		{"timeout", map[string]any{"language": "python", "code": "while True: pass", "timeout": "500ms"}, "timeout", true, "wall-clock limit of 500ms"},
		// Models often send seconds as a number, which the API and the CLI
		// take too.
		{"timeout in seconds", map[string]any{"language": "python", "code": "while True: pass", "timeout": 0.5}, "timeout", true, "wall-clock limit of 500ms"},
		{"memory in bytes", map[string]any{"language": "python", "code": "x=[]\nwhile True: x.append(bytearray(16<<20))", "memory": 64 << 20}, "memory_limit", true, "memory limit of 64MiB"},
		{"memory", map[string]any{"language": "python", "code": "x=[]\nwhile True: x.append(bytearray(16<<20))", "memory": "64MiB"}, "memory_limit", true, "memory limit of 64MiB"},
		{"compile error", map[string]any{"language": "c", "code": "int main( {"}, "exited", true, "compiler output"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "run_code", Arguments: c.args})
			if err != nil {
				t.Fatal(err)
			}
			var out RunCodeOutput
			b, _ := json.Marshal(res.StructuredContent)
			if err := json.Unmarshal(b, &out); err != nil {
				t.Fatalf("structured content %s: %v", b, err)
			}
			if out.Status != c.status || res.IsError != c.isError || !strings.Contains(text(res), c.text) {
				t.Errorf("status %s isError %v text %q; want %s %v containing %q", out.Status, res.IsError, text(res), c.status, c.isError, c.text)
			}
		})
	}
}

// TestHostileCalls: wrong types, huge code, unknown languages, bad limits
// get tool errors a model can read, and the server goes on serving.
func TestHostileCalls(t *testing.T) {
	cs := connect(t, requireExecutor(t))
	cases := []struct {
		name string
		args any
		text string
	}{
		{"wrong type", map[string]any{"language": 5, "code": "x"}, "language"},
		{"missing code", map[string]any{"language": "python"}, "code"},
		{"unknown language", map[string]any{"language": "cobol", "code": "x"}, "available"},
		{"huge code", map[string]any{"language": "python", "code": strings.Repeat("#", MaxCodeBytes+1)}, "limit"},
		{"bad timeout", map[string]any{"language": "python", "code": "1", "timeout": "forever"}, "timeout"},
		{"memory above ceiling", map[string]any{"language": "python", "code": "1", "memory": "1TiB"}, "ceiling"},
		{"hostile file name", map[string]any{"language": "python", "code": "1", "files": []map[string]string{{"name": "../../etc/x", "content": "y"}}}, "workspace"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "run_code", Arguments: c.args})
			if err != nil {
				t.Fatalf("protocol error instead of a tool error: %v", err)
			}
			if !res.IsError || !strings.Contains(text(res), c.text) {
				t.Errorf("isError %v text %q; want an error mentioning %q", res.IsError, text(res), c.text)
			}
		})
	}
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "run_code", Arguments: map[string]any{"language": "python", "code": "print('still here')"}})
	if err != nil || res.IsError || !strings.Contains(text(res), "still here") {
		t.Fatalf("the server stopped serving after hostile calls: %v %q", err, text(res))
	}
	lr, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "list_runtimes", Arguments: map[string]any{}})
	if err != nil || !strings.Contains(text(lr), "python 3.") {
		t.Fatalf("list_runtimes: %v %q", err, text(lr))
	}
}
