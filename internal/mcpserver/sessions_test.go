package mcpserver

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/sandboxd/sandboxd/internal/executor"
	"github.com/sandboxd/sandboxd/internal/isolate"
	"github.com/sandboxd/sandboxd/internal/session"
	"github.com/sandboxd/sandboxd/internal/testenv"
)

// requireSessions returns an executor and a session Manager on its
// process backend, with their own state directory, closed at the end of
// the test.
func requireSessions(t *testing.T) (*executor.Executor, *session.Manager) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("requires root for the process backend")
	}
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		testenv.MissingFile(t, "/usr/bin/python3")
	}
	state, parent := testenv.StateDir(t, "mcpsessiontest")
	x, err := executor.New(executor.Options{Isolate: isolate.Config{StateDir: state, CgroupParent: parent}})
	if err != nil {
		testenv.MissingSandbox(t, err)
	}
	t.Cleanup(func() { x.Close() })
	if x.Process() == nil {
		testenv.MissingSandbox(t, x.ProcessErr())
	}
	m := session.NewManager(context.Background(), session.Config{
		Runner: x.Process(), RunnerErr: x.ProcessErr(), Runtimes: x.Runtimes(), Replica: "test",
	})
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("close sessions: %v", err)
		}
	})
	return x, m
}

// callTool calls a tool and fails the test on a protocol error: every
// failure of a session tool must be a tool result.
func callTool(t *testing.T, cs *mcp.ClientSession, name string, args map[string]any) *mcp.CallToolResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("%s %v: a protocol error instead of a tool result: %v", name, args, err)
	}
	return res
}

// structured decodes a result's structured content into a T.
func structured[T any](t *testing.T, res *mcp.CallToolResult) T {
	t.Helper()
	var v T
	b, err := json.Marshal(res.StructuredContent)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("structured content %s: %v", b, err)
	}
	return v
}

// wantToolError checks that res is a tool error whose text has every one
// of want.
func wantToolError(t *testing.T, what string, res *mcp.CallToolResult, want ...string) {
	t.Helper()
	if !res.IsError {
		t.Errorf("%s: isError false, want a tool error; text %q", what, text(res))
		return
	}
	for _, w := range want {
		if !strings.Contains(text(res), w) {
			t.Errorf("%s: the error %q does not say %q", what, text(res), w)
		}
	}
}

func newSession(t *testing.T, cs *mcp.ClientSession, args map[string]any) string {
	t.Helper()
	res := callTool(t, cs, "create_session", args)
	if res.IsError {
		t.Fatalf("create_session: %s", text(res))
	}
	out := structured[SessionOutput](t, res)
	if out.SessionID == "" || out.Language != "python" || !strings.HasPrefix(out.Version, "3.") || out.State != "idle" {
		t.Fatalf("create_session: %+v", out)
	}
	if !strings.Contains(text(res), out.SessionID) {
		t.Errorf("create_session's text does not give the id: %q", text(res))
	}
	return out.SessionID
}

func imageItems(res *mcp.CallToolResult) []*mcp.ImageContent {
	var out []*mcp.ImageContent
	for _, c := range res.Content {
		if ic, ok := c.(*mcp.ImageContent); ok {
			out = append(out, ic)
		}
	}
	return out
}

// TestSessionToolsListed: the session tools exist with a Manager, with
// schemas a model can follow, and not without one.
func TestSessionToolsListed(t *testing.T) {
	tools := func(m *session.Manager) map[string]*mcp.Tool {
		res, err := connectSessions(t, nil, m).ListTools(t.Context(), nil)
		if err != nil {
			t.Fatal(err)
		}
		byName := map[string]*mcp.Tool{}
		for _, tool := range res.Tools {
			byName[tool.Name] = tool
		}
		return byName
	}
	if got := tools(nil); got["create_session"] != nil || got["run_code"] == nil {
		t.Errorf("without a Manager: tools %v", got)
	}
	m := session.NewManager(t.Context(), session.Config{Replica: "test"})
	t.Cleanup(func() { m.Close() })
	got := tools(m)
	for name, required := range map[string][]string{
		"create_session":     nil,
		"run_in_session":     {"session_id", "code"},
		"upload_file":        {"session_id", "path", "content"},
		"download_file":      {"session_id", "path"},
		"list_session_files": {"session_id"},
		"list_sessions":      nil,
		"close_session":      {"session_id"},
	} {
		tool := got[name]
		if tool == nil {
			t.Errorf("no %s tool", name)
			continue
		}
		if tool.OutputSchema == nil || len(tool.Description) < 80 {
			t.Errorf("%s has no output schema or a thin description", name)
		}
		schema, _ := json.Marshal(tool.InputSchema)
		var s struct {
			Required []string `json:"required"`
		}
		_ = json.Unmarshal(schema, &s)
		if strings.Join(s.Required, ",") != strings.Join(required, ",") {
			t.Errorf("%s requires %v, want %v: %s", name, s.Required, required, schema)
		}
	}
	// The session languages come from the registry: every runtime with a
	// kernel, and no other.
	if schema, _ := json.Marshal(got["create_session"].InputSchema); !strings.Contains(string(schema), "javascript, python, ruby") || strings.Contains(string(schema), "bash") {
		t.Errorf("create_session's languages: %s", schema)
	}
	if d := got["run_in_session"].Description; !strings.Contains(d, "image") || !strings.Contains(d, "persist") && !strings.Contains(d, "earlier cells") {
		t.Errorf("run_in_session's description does not say figures come back as images and state persists: %q", d)
	}
}

// TestSessionToolErrorsWithoutKernel: calls that fail before any kernel
// is involved are tool errors that say what to do.
func TestSessionToolErrorsWithoutKernel(t *testing.T) {
	m := session.NewManager(t.Context(), session.Config{RunnerErr: isolate.ErrUnsupported, Replica: "test"})
	t.Cleanup(func() { m.Close() })
	cs := connectSessions(t, nil, m)
	cases := []struct {
		name string
		tool string
		args map[string]any
		want []string
	}{
		{"no backend", "create_session", map[string]any{}, []string{"unavailable"}},
		{"bad language", "create_session", map[string]any{"language": "c"}, []string{"no session kernel"}},
		{"bad timeout", "create_session", map[string]any{"timeout": "soon"}, []string{"timeout"}},
		{"bad idle timeout", "create_session", map[string]any{"idle_timeout": "1ms"}, []string{"idle_timeout"}},
		{"hostile file", "create_session", map[string]any{"files": []map[string]string{{"name": "../x", "content": "y"}}}, []string{"workspace"}},
		{"unknown session", "run_in_session", map[string]any{"session_id": "test-nosuch", "code": "1"}, []string{"not found", "create_session"}},
		{"empty session id", "run_in_session", map[string]any{"session_id": "", "code": "1"}, []string{"session_id is required"}},
		{"missing code", "run_in_session", map[string]any{"session_id": "test-x"}, []string{"code"}},
		{"huge code", "run_in_session", map[string]any{"session_id": "test-x", "code": strings.Repeat("#", MaxCodeBytes+1)}, []string{"limit"}},
		{"traversal", "download_file", map[string]any{"session_id": "test-x", "path": "../../etc/passwd"}, []string{"must not leave the workspace"}},
		{"absolute", "download_file", map[string]any{"session_id": "test-x", "path": "/etc/passwd"}, []string{"absolute"}},
		{"absolute in the workspace", "upload_file", map[string]any{"session_id": "test-x", "path": "/workspace/d/x.csv", "content": ""}, []string{`as "d/x.csv"`}},
		{"dot dot inside", "upload_file", map[string]any{"session_id": "test-x", "path": "a/../../b", "content": ""}, []string{"clean path"}},
		{"bad encoding", "upload_file", map[string]any{"session_id": "test-x", "path": "a", "content": "x", "encoding": "hex"}, []string{"base64"}},
		{"bad base64", "upload_file", map[string]any{"session_id": "test-x", "path": "a", "content": "!!", "encoding": "base64"}, []string{"base64"}},
		{"too large", "upload_file", map[string]any{"session_id": "test-x", "path": "a", "content": strings.Repeat("x", MaxFileBytes+1)}, []string{"8MiB"}},
		{"close unknown", "close_session", map[string]any{"session_id": "test-nosuch"}, []string{"not found"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wantToolError(t, c.tool, callTool(t, cs, c.tool, c.args), c.want...)
		})
	}
	if res := callTool(t, cs, "list_sessions", map[string]any{}); res.IsError || text(res) != "no sessions" {
		t.Errorf("list_sessions: %v %q", res.IsError, text(res))
	}
}

// TestOwner: over HTTP the bearer token owns the sessions; on stdio (no
// request extra) the owner is anonymous.
func TestOwner(t *testing.T) {
	h := http.Header{}
	h.Set("Authorization", "Bearer secret")
	for _, c := range []struct {
		name string
		req  *mcp.CallToolRequest
		want string
	}{
		{"stdio", &mcp.CallToolRequest{}, session.Owner("")},
		{"no header", &mcp.CallToolRequest{Extra: &mcp.RequestExtra{}}, session.Owner("")},
		{"token", &mcp.CallToolRequest{Extra: &mcp.RequestExtra{Header: h}}, session.Owner("Bearer secret")},
	} {
		if got := owner(c.req); got != c.want {
			t.Errorf("%s: owner %q, want %q", c.name, got, c.want)
		}
	}
}

// TestSessionNotebook walks a model's session: state across cells, the
// trailing value, an exception, files both ways, closing.
func TestSessionNotebook(t *testing.T) {
	x, m := requireSessions(t)
	cs := connectSessions(t, x, m)
	id := newSession(t, cs, map[string]any{"timeout": "20s", "idle_timeout": "5m", "files": []map[string]string{{"name": "data.csv", "content": "a,b\n1,2\n"}}})
	if res := callTool(t, cs, "list_sessions", map[string]any{}); !strings.Contains(text(res), id) {
		t.Errorf("list_sessions does not list %s: %q", id, text(res))
	}

	steps := []struct {
		code    string
		isError bool
		status  string
		text    []string
		value   string
	}{
		{"x = 41\nprint('set')", false, "ok", []string{"ok (cell 1)", "--- stdout ---\nset"}, ""},
		{"x + 1", false, "ok", []string{"--- value ---\n42"}, "42"},
		{"open('data.csv').read()", false, "ok", []string{`'a,b\n1,2\n'`}, `'a,b\n1,2\n'`},
		{"import sys\nprint('warn', file=sys.stderr)", false, "ok", []string{"--- stderr ---\nwarn"}, ""},
		{"def f():\n    return 1/0\nf()", true, "error", []string{"error (cell 5): ZeroDivisionError: division by zero", "--- traceback ---", "Traceback", "1/0"}, ""},
		{"x", false, "ok", []string{"41"}, "41"},
	}
	for _, st := range steps {
		res := callTool(t, cs, "run_in_session", map[string]any{"session_id": id, "code": st.code})
		out := structured[CellOutput](t, res)
		if res.IsError != st.isError || out.Status != st.status || out.Result["text/plain"] != st.value || out.State != "idle" || out.SessionID != id {
			t.Errorf("cell %q: isError %v %+v; want isError %v status %s value %q", st.code, res.IsError, out, st.isError, st.status, st.value)
		}
		for _, w := range st.text {
			if !strings.Contains(text(res), w) {
				t.Errorf("cell %q: the text %q lacks %q", st.code, text(res), w)
			}
		}
	}

	// Files: text in, read and written by a cell, out; binary both ways.
	if res := callTool(t, cs, "upload_file", map[string]any{"session_id": id, "path": "in/h.txt", "content": "héllo\n"}); res.IsError || structured[UploadFileOutput](t, res).Size != 7 {
		t.Fatalf("upload_file: %q", text(res))
	}
	blob := []byte{0, 1, 2, 0xff, 0xfe, 'x'}
	if res := callTool(t, cs, "upload_file", map[string]any{"session_id": id, "path": "b.bin", "content": base64.StdEncoding.EncodeToString(blob), "encoding": "base64"}); res.IsError {
		t.Fatalf("upload_file base64: %q", text(res))
	}
	res := callTool(t, cs, "run_in_session", map[string]any{"session_id": id, "code": "s = open('in/h.txt').read()\nopen('out.txt', 'w').write(s.upper())\nopen('b.bin', 'rb').read() == bytes([0, 1, 2, 255, 254, 120])"})
	if res.IsError || !strings.Contains(text(res), "True") {
		t.Fatalf("reading the uploads: %q", text(res))
	}
	res = callTool(t, cs, "download_file", map[string]any{"session_id": id, "path": "out.txt"})
	if res.IsError || len(res.Content) != 1 || text(res) != "HÉLLO\n" {
		t.Errorf("download_file out.txt: %v %q", res.IsError, text(res))
	}
	if out := structured[DownloadFileOutput](t, res); out.Kind != "text" || out.Size != 7 || out.MIMEType != "text/plain" {
		t.Errorf("download_file out.txt: %+v", out)
	}
	res = callTool(t, cs, "download_file", map[string]any{"session_id": id, "path": "b.bin"})
	var got []byte
	for _, c := range res.Content {
		if er, ok := c.(*mcp.EmbeddedResource); ok && er.Resource != nil {
			got = er.Resource.Blob
		}
	}
	if res.IsError || !bytes.Equal(got, blob) || structured[DownloadFileOutput](t, res).Kind != "binary" {
		t.Errorf("download_file b.bin: %v %q blob %v", res.IsError, text(res), got)
	}
	res = callTool(t, cs, "list_session_files", map[string]any{"session_id": id})
	for _, w := range []string{"data.csv (8 bytes)", "in/\n", "in/h.txt (7 bytes)", "out.txt"} {
		if !strings.Contains(text(res), w) {
			t.Errorf("list_session_files: %q lacks %q", text(res), w)
		}
	}
	for _, p := range []string{"../../etc/passwd", "/etc/passwd", "nosuch.txt", "in"} {
		wantToolError(t, "download_file "+p, callTool(t, cs, "download_file", map[string]any{"session_id": id, "path": p}))
	}

	// A cell longer than the session allows is refused before it runs.
	wantToolError(t, "a cell timeout above the session's", callTool(t, cs, "run_in_session", map[string]any{"session_id": id, "code": "1", "timeout": "1h"}), "at most this session's cell timeout of 20s")

	res = callTool(t, cs, "close_session", map[string]any{"session_id": id})
	if res.IsError || structured[CloseSessionOutput](t, res).Cells != 7 {
		t.Errorf("close_session: %q", text(res))
	}
	wantToolError(t, "run_in_session after close", callTool(t, cs, "run_in_session", map[string]any{"session_id": id, "code": "x"}), "not found")
	wantToolError(t, "download_file after close", callTool(t, cs, "download_file", map[string]any{"session_id": id, "path": "out.txt"}), "not found")
	wantToolError(t, "close_session twice", callTool(t, cs, "close_session", map[string]any{"session_id": id}), "not found")
}

// TestSessionPlot: a matplotlib figure comes back as a PNG image item,
// not as base64 in the text or the structured result.
func TestSessionPlot(t *testing.T) {
	if _, err := os.Stat("/usr/lib/python3/dist-packages/matplotlib"); err != nil {
		testenv.MissingFile(t, "/usr/lib/python3/dist-packages/matplotlib")
	}
	x, m := requireSessions(t)
	cs := connectSessions(t, x, m)
	id := newSession(t, cs, map[string]any{"timeout": "60s", "memory": "512MiB"})
	res := callTool(t, cs, "run_in_session", map[string]any{"session_id": id, "code": "import matplotlib.pyplot as plt\nplt.plot([1, 4, 9])\nplt.title('squares')\nplt.show()\n'done'"})
	if res.IsError {
		t.Fatalf("plot cell: %q", text(res))
	}
	imgs := imageItems(res)
	if len(imgs) != 1 || imgs[0].MIMEType != "image/png" {
		t.Fatalf("plot cell: %d images (%q), want one image/png", len(imgs), text(res))
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(imgs[0].Data))
	if err != nil || cfg.Width <= 100 || cfg.Height <= 100 {
		t.Errorf("the image: %v, %dx%d", err, cfg.Width, cfg.Height)
	}
	b, _ := json.Marshal(res.StructuredContent)
	out := structured[CellOutput](t, res)
	if out.Images != 1 || len(out.Display) != 1 || strings.Contains(string(b), "iVBOR") || strings.Contains(text(res), "iVBOR") || len(b) > 4096 {
		t.Errorf("the image's base64 is duplicated outside the image item: structured %s text %q", b, text(res))
	}
	if !strings.Contains(text(res), "[1 image follows]") || !strings.Contains(text(res), "'done'") {
		t.Errorf("text %q", text(res))
	}
	// On the wire the data is base64 once, of the PNG itself.
	wire, _ := json.Marshal(imgs[0])
	var w struct{ Type, MIMEType, Data string }
	_ = json.Unmarshal(wire, &w)
	if dec, err := base64.StdEncoding.DecodeString(w.Data); err != nil || !bytes.HasPrefix(dec, []byte("\x89PNG\r\n\x1a\n")) || w.Type != "image" {
		t.Errorf("wire form of the image: type %q, data decodes to %.8q (%v)", w.Type, dec, err)
	}

	// A saved figure downloads as an image too; a forged display that
	// claims PNG but is not is left out with a note.
	res = callTool(t, cs, "run_in_session", map[string]any{"session_id": id, "code": "plt.plot([1, 2]); plt.savefig('fig.png'); plt.close('all')\ndisplay(type('X', (), {'_repr_png_': lambda self: b'not a png'})())"})
	if len(imageItems(res)) != 0 || !strings.Contains(text(res), "its bytes are not image/png") {
		t.Errorf("forged png display: %d images, text %q", len(imageItems(res)), text(res))
	}
	res = callTool(t, cs, "download_file", map[string]any{"session_id": id, "path": "fig.png"})
	if imgs := imageItems(res); res.IsError || len(imgs) != 1 || !bytes.HasPrefix(imgs[0].Data, []byte("\x89PNG")) {
		t.Errorf("download_file fig.png: %v %q", res.IsError, text(res))
	}
}

// TestSessionHostileFiles: what a session's code plants in its workspace
// (symlinks to the host, fifos, huge files) never leads the file tools
// out of it or into a hang.
func TestSessionHostileFiles(t *testing.T) {
	x, m := requireSessions(t)
	cs := connectSessions(t, x, m)
	passwd, err := os.ReadFile("/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	id := newSession(t, cs, nil)
	res := callTool(t, cs, "run_in_session", map[string]any{"session_id": id, "code": "import os\nos.symlink('/etc/passwd', 'link')\nos.symlink('/etc', 'etc')\nos.mkfifo('fifo')\nos.mkdir('d')\nwith open('big', 'wb') as f: f.truncate(9 << 20)"})
	if res.IsError {
		t.Fatalf("planting: %q", text(res))
	}
	for _, c := range []struct {
		tool, path string
		want       string
	}{
		{"download_file", "link", "symlink"},
		{"download_file", "etc/passwd", "symlink"},
		{"download_file", "fifo", "fifo"},
		{"download_file", "d", "directory"},
		{"download_file", "big", "8MiB"},
		{"upload_file", "link", "symlink"},
		{"upload_file", "etc/x", "symlink"},
		{"upload_file", "fifo", "fifo"},
		{"list_session_files", "etc", "symlink"},
	} {
		args := map[string]any{"session_id": id, "path": c.path}
		switch c.tool {
		case "upload_file":
			args["content"] = "x"
		case "list_session_files":
			args = map[string]any{"session_id": id, "dir": c.path}
		}
		start := time.Now()
		wantToolError(t, c.tool+" "+c.path, callTool(t, cs, c.tool, args), c.want)
		if time.Since(start) > 5*time.Second {
			t.Errorf("%s %s took %s", c.tool, c.path, time.Since(start))
		}
	}
	if after, err := os.ReadFile("/etc/passwd"); err != nil || !bytes.Equal(after, passwd) {
		t.Errorf("/etc/passwd changed through the session's symlink (%v)", err)
	}
	res = callTool(t, cs, "list_session_files", map[string]any{"session_id": id})
	if res.IsError || !strings.Contains(text(res), "link (symlink)") {
		t.Errorf("list_session_files: %q", text(res))
	}
}

// TestSessionLimits: a cell past its timeout is interrupted and the
// session goes on; one that ignores the interrupt kills the session,
// which then refuses cells but still gives its files.
func TestSessionLimits(t *testing.T) {
	x, m := requireSessions(t)
	cs := connectSessions(t, x, m)
	id := newSession(t, cs, nil)
	callTool(t, cs, "run_in_session", map[string]any{"session_id": id, "code": "n = 7\nopen('kept.txt', 'w').write('kept')"})

	res := callTool(t, cs, "run_in_session", map[string]any{"session_id": id, "code": "import time\nprint('start', flush=True)\ntime.sleep(60)", "timeout": "500ms"})
	out := structured[CellOutput](t, res)
	if !res.IsError || out.Status != "timeout" || out.State != "idle" || out.Error == nil || out.Error.Name != "KeyboardInterrupt" ||
		!strings.HasPrefix(text(res), "timeout (cell 2): the cell's timeout of 500ms was reached") || !strings.Contains(text(res), "start") {
		t.Errorf("timeout: %+v\ntext %q", out, text(res))
	}
	if res := callTool(t, cs, "run_in_session", map[string]any{"session_id": id, "code": "n"}); res.IsError || !strings.Contains(text(res), "7") {
		t.Errorf("after the interrupt: %q", text(res))
	}

	res = callTool(t, cs, "run_in_session", map[string]any{"session_id": id, "code": "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass", "timeout": "300ms"})
	out = structured[CellOutput](t, res)
	if !res.IsError || out.Status != "timeout" || out.State != "dead" || !strings.Contains(text(res), "The session is dead") {
		t.Errorf("hard hang: %+v\ntext %q", out, text(res))
	}
	wantToolError(t, "a cell in a dead session", callTool(t, cs, "run_in_session", map[string]any{"session_id": id, "code": "n"}), "dead", "close_session")
	// Its workspace went with its kernel.
	wantToolError(t, "download_file from a dead session", callTool(t, cs, "download_file", map[string]any{"session_id": id, "path": "kept.txt"}), "dead", "did not stop", "close_session")
	if res := callTool(t, cs, "list_sessions", map[string]any{}); !strings.Contains(text(res), "dead") {
		t.Errorf("list_sessions: %q", text(res))
	}
	if res := callTool(t, cs, "close_session", map[string]any{"session_id": id}); res.IsError {
		t.Errorf("close_session of a dead session: %q", text(res))
	}
}

// TestSessionHammer: concurrent cells on one session run one at a time,
// each seeing the last one's state.
func TestSessionHammer(t *testing.T) {
	x, m := requireSessions(t)
	cs := connectSessions(t, x, m)
	id := newSession(t, cs, nil)
	callTool(t, cs, "run_in_session", map[string]any{"session_id": id, "code": "n = 0"})
	const workers = 8
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "run_in_session", Arguments: map[string]any{"session_id": id, "code": "n += 1"}})
			if err != nil || res.IsError {
				t.Errorf("n += 1: %v %+v", err, res)
			}
			if _, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "list_session_files", Arguments: map[string]any{"session_id": id}}); err != nil {
				t.Errorf("list_session_files: %v", err)
			}
		})
	}
	wg.Wait()
	if res := callTool(t, cs, "run_in_session", map[string]any{"session_id": id, "code": "n"}); !strings.Contains(text(res), "--- value ---\n8") {
		t.Errorf("n after %d concurrent cells: %q", workers, text(res))
	}
}

// TestSessionOwners: over streamable HTTP, a session belongs to the token
// that made it; another token cannot see, use or close it.
func TestSessionOwners(t *testing.T) {
	x, m := requireSessions(t)
	srv := New(x, x.Runtimes(), "test", m)
	hs := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil))
	t.Cleanup(hs.Close)
	connectAs := func(token string) *mcp.ClientSession {
		c := &http.Client{Transport: bearer{token: token, rt: http.DefaultTransport}}
		cs, err := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, nil).Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: hs.URL, HTTPClient: c}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cs.Close() })
		return cs
	}
	alice, mallory := connectAs("alice"), connectAs("mallory")
	id := newSession(t, alice, nil)
	callTool(t, alice, "upload_file", map[string]any{"session_id": id, "path": "secret.txt", "content": "s3cret"})
	for _, c := range []struct {
		tool string
		args map[string]any
	}{
		{"run_in_session", map[string]any{"session_id": id, "code": "1"}},
		{"download_file", map[string]any{"session_id": id, "path": "secret.txt"}},
		{"upload_file", map[string]any{"session_id": id, "path": "x", "content": "x"}},
		{"list_session_files", map[string]any{"session_id": id}},
		{"close_session", map[string]any{"session_id": id}},
	} {
		wantToolError(t, "mallory's "+c.tool, callTool(t, mallory, c.tool, c.args), "not found")
	}
	if res := callTool(t, mallory, "list_sessions", map[string]any{}); strings.Contains(text(res), id) {
		t.Errorf("mallory lists alice's session: %q", text(res))
	}
	if res := callTool(t, alice, "download_file", map[string]any{"session_id": id, "path": "secret.txt"}); text(res) != "s3cret" {
		t.Errorf("alice's download: %q", text(res))
	}
}

// bearer adds a bearer token to each request.
type bearer struct {
	token string
	rt    http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.rt.RoundTrip(r)
}
