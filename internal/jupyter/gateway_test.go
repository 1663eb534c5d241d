package jupyter

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sandboxd/sandboxd/internal/api"
	"github.com/sandboxd/sandboxd/internal/isolate"
	"github.com/sandboxd/sandboxd/internal/isolate/nsinit"
	"github.com/sandboxd/sandboxd/internal/session"
	"github.com/sandboxd/sandboxd/internal/testenv"
)

func TestMain(m *testing.M) {
	nsinit.MaybeRun()
	os.Exit(m.Run())
}

// newGateway serves a Gateway on real sessions behind the real API
// server (its token check and browser checks), as the daemon mounts it,
// and returns the server's URL.
func newGateway(t *testing.T, tokens ...string) string {
	t.Helper()
	base, _, _ := newTestGateway(t, Config{Version: "test"}, session.Config{}, tokens...)
	return base
}

// call sends a REST request with token (if any) and decodes the JSON
// answer into out (if not nil); it returns the status.
func call(t *testing.T, method, url, token string, out any) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "token "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, url, err, b)
		}
	}
	return resp.StatusCode
}

func startKernel(t *testing.T, base, token string) kernelModel {
	t.Helper()
	var k kernelModel
	if code := call(t, "POST", base+"/api/kernels", token, &k); code != http.StatusCreated || !isUUID(k.ID) || k.Name != "python3" {
		t.Fatalf("POST /api/kernels: %d %+v", code, k)
	}
	return k
}

// client is a test's end of a kernel's channels.
type client struct {
	t      *testing.T
	ws     *websocket.Conn
	binary bool
}

func dial(t *testing.T, base, id, query string, hdr http.Header, protocols ...string) (*client, *http.Response, error) {
	url := "ws" + strings.TrimPrefix(base, "http") + "/api/kernels/" + id + "/channels" + query
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: hdr, Host: hdr.Get("Host"), Subprotocols: protocols})
	if err != nil {
		return nil, resp, err
	}
	ws.SetReadLimit(64 << 20)
	t.Cleanup(func() { ws.CloseNow() })
	return &client{t: t, ws: ws, binary: ws.Subprotocol() == v1Protocol}, resp, nil
}

func mustDial(t *testing.T, base, id, query string, protocols ...string) *client {
	t.Helper()
	c, _, err := dial(t, base, id, query, nil, protocols...)
	if err != nil {
		t.Fatalf("dial the channels: %v", err)
	}
	return c
}

// send sends a request and returns its msg_id.
func (c *client) send(channel, msgType string, content any) string {
	c.t.Helper()
	id := newUUID()
	h, _ := json.Marshal(header{MsgID: id, MsgType: msgType, Session: "client", Username: "test", Version: protocolVersion})
	body, _ := json.Marshal(content)
	m := &message{Channel: channel, Header: h, ParentHeader: json.RawMessage("{}"), Metadata: json.RawMessage("{}"), Content: body, Buffers: []json.RawMessage{}}
	typ, b := websocket.MessageBinary, encodeV1(m)
	if !c.binary {
		typ = websocket.MessageText
		b, _ = encodeJSON(m)
	}
	if err := c.ws.Write(c.t.Context(), typ, b); err != nil {
		c.t.Fatalf("send %s: %v", msgType, err)
	}
	return id
}

// got is a message the test received, decoded.
type got struct {
	channel, msgType, parent string
	content                  map[string]any
}

func (c *client) recv() got {
	c.t.Helper()
	m := c.recvAsync()
	if m.err != nil {
		c.t.Fatalf("read a message: %v", m.err)
	}
	return m.got
}

// finish reads until the request id has both its reply and its idle
// status (as a client completes a request) and returns the messages
// that answer it, in order.
func (c *client) finish(id string) []got {
	c.t.Helper()
	var out []got
	replied, idle := false, false
	for !replied || !idle {
		m := c.recv()
		if m.parent != id {
			continue
		}
		out = append(out, m)
		replied = replied || strings.HasSuffix(m.msgType, "_reply")
		idle = idle || (m.msgType == "status" && m.content["execution_state"] == "idle")
	}
	return out
}

func (c *client) execute(code string) []got {
	c.t.Helper()
	return c.finish(c.send("shell", "execute_request", map[string]any{"code": code, "silent": false}))
}

// types lists the messages' channels and types; a stream's chunks (as
// the pipe cut them) count as one.
func types(ms []got) []string {
	var s []string
	for _, m := range ms {
		t := m.channel + ":" + m.msgType
		if len(s) > 0 && t == "iopub:stream" && s[len(s)-1] == t {
			continue
		}
		s = append(s, t)
	}
	return s
}

// streamed is the text of the messages' stream name.
func streamed(ms []got, name string) string {
	var b strings.Builder
	for _, m := range ms {
		if m.msgType == "stream" && m.content["name"] == name {
			b.WriteString(m.content["text"].(string))
		}
	}
	return b.String()
}

func find(ms []got, msgType string) map[string]any {
	for _, m := range ms {
		if m.msgType == msgType {
			return m.content
		}
	}
	return nil
}

// TestExecute: a cell's story in order, execution counts, a result, a
// display, a traceback as lines, input() refused clearly; over JSON and
// over the v1 binary protocol.
func TestExecute(t *testing.T) {
	base := newGateway(t)
	for _, proto := range []string{"json", v1Protocol} {
		t.Run(proto, func(t *testing.T) {
			k := startKernel(t, base, "")
			var protos []string
			if proto != "json" {
				protos = []string{proto}
			}
			c := mustDial(t, base, k.ID, "?session_id=abc", protos...)
			if c.binary != (proto != "json") {
				t.Fatalf("subprotocol %q negotiated for %s", c.ws.Subprotocol(), proto)
			}
			info := c.finish(c.send("shell", "kernel_info_request", map[string]any{}))
			if got := strings.Join(types(info), " "); got != "iopub:status shell:kernel_info_reply iopub:status" {
				t.Fatalf("kernel_info: %s", got)
			}
			li, _ := find(info, "kernel_info_reply")["language_info"].(map[string]any)
			if li["name"] != "python" || li["version"] == "" {
				t.Fatalf("language_info: %v", li)
			}

			ms := c.execute("print('hi')\nx = 41")
			want := "iopub:status iopub:execute_input iopub:stream shell:execute_reply iopub:status"
			if got := strings.Join(types(ms), " "); got != want {
				t.Fatalf("first cell: %s, want %s", got, want)
			}
			if r := find(ms, "execute_reply"); ms[0].content["execution_state"] != "busy" || ms[1].content["execution_count"] != 1.0 || streamed(ms, "stdout") != "hi\n" ||
				r["status"] != "ok" || r["execution_count"] != 1.0 {
				t.Fatalf("first cell: %+v", ms)
			}

			ms = c.execute("class H:\n    def _repr_html_(self): return '<b>h</b>'\ndisplay(H())\nx + 1")
			if d := find(ms, "display_data"); d == nil || d["data"].(map[string]any)["text/html"] != "<b>h</b>" {
				t.Fatalf("display: %+v", ms)
			}
			r := find(ms, "execute_result")
			if r == nil || r["execution_count"] != 2.0 || r["data"].(map[string]any)["text/plain"] != "42" {
				t.Fatalf("second cell's result: %+v", ms)
			}

			ms = c.execute("def f():\n    return 1/0\nf()")
			e, reply := find(ms, "error"), find(ms, "execute_reply")
			tb, _ := e["traceback"].([]any)
			if e["ename"] != "ZeroDivisionError" || len(tb) < 3 || reply["status"] != "error" || reply["execution_count"] != 3.0 {
				t.Fatalf("error: %+v", ms)
			}
			for _, l := range tb {
				if strings.Contains(l.(string), "\n") {
					t.Fatalf("traceback line with a newline: %q", l)
				}
			}

			ms = c.execute("input('name? ')")
			if e := find(ms, "error"); e == nil || e["ename"] != "StdinNotImplementedError" || !strings.Contains(e["evalue"].(string), "without stdin") {
				t.Fatalf("input(): %+v", ms)
			}

			for _, rq := range []struct{ req, reply, field string }{
				{"complete_request", "complete_reply", "matches"},
				{"inspect_request", "inspect_reply", "found"},
				{"history_request", "history_reply", "history"},
				{"comm_info_request", "comm_info_reply", "comms"},
				{"is_complete_request", "is_complete_reply", "status"},
			} {
				ms := c.finish(c.send("shell", rq.req, map[string]any{"code": "x", "cursor_pos": 1}))
				if r := find(ms, rq.reply); r == nil || r[rq.field] == nil {
					t.Errorf("%s: %+v", rq.req, ms)
				}
			}
		})
	}
}

// TestInterruptRestartShutdown: an interrupt stops a long cell and the
// kernel goes on; a restart forgets the variables and counts from 1; a
// shutdown closes the channels and the kernel is then not found.
func TestInterruptRestartShutdown(t *testing.T) {
	base := newGateway(t)
	k := startKernel(t, base, "")
	c := mustDial(t, base, k.ID, "")
	c.execute("import time\nx = 1")
	id := c.send("shell", "execute_request", map[string]any{"code": "time.sleep(60)"})
	for m := c.recv(); m.msgType != "execute_input"; m = c.recv() {
	}
	var model kernelModel
	if call(t, "GET", base+"/api/kernels/"+k.ID, "", &model); model.ExecutionState != "busy" || model.Connections != 1 {
		t.Fatalf("model while a cell runs: %+v", model)
	}
	start := time.Now()
	if code := call(t, "POST", base+"/api/kernels/"+k.ID+"/interrupt", "", nil); code != http.StatusNoContent {
		t.Fatalf("interrupt: %d", code)
	}
	ms := c.finish(id)
	if e := find(ms, "error"); e == nil || e["ename"] != "KeyboardInterrupt" {
		t.Fatalf("interrupted cell: %+v", ms)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("the interrupt took %s", took)
	}
	if ms := c.execute("x + 1"); find(ms, "execute_result") == nil || find(ms, "execute_result")["execution_count"] != 3.0 {
		t.Fatalf("after the interrupt: %+v", ms)
	}

	if code := call(t, "POST", base+"/api/kernels/"+k.ID+"/restart", "", &model); code != http.StatusOK || model.ID != k.ID {
		t.Fatalf("restart: %d %+v", code, model)
	}
	ms = c.execute("x")
	if e, r := find(ms, "error"), find(ms, "execute_reply"); e == nil || e["ename"] != "NameError" || r["execution_count"] != 1.0 {
		t.Fatalf("after the restart: %+v", ms)
	}

	if code := call(t, "DELETE", base+"/api/kernels/"+k.ID, "", nil); code != http.StatusNoContent {
		t.Fatalf("shutdown: %d", code)
	}
	if code := call(t, "GET", base+"/api/kernels/"+k.ID, "", nil); code != http.StatusNotFound {
		t.Fatalf("GET after the shutdown: %d, want 404", code)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for {
		if _, _, err := c.ws.Read(ctx); err != nil {
			if s := websocket.CloseStatus(err); s != websocket.StatusNormalClosure {
				t.Fatalf("the channels ended with %v, want a normal close", err)
			}
			break
		}
	}
}

// TestTokens: a token sees only its own kernels, over REST and the
// WebSocket (?token= as browsers send it); no token, or a page of
// another origin, is refused.
func TestTokens(t *testing.T) {
	base := newGateway(t, "alice-token", "bob-token")
	k := startKernel(t, base, "alice-token")
	var list []kernelModel
	if call(t, "GET", base+"/api/kernels", "bob-token", &list); len(list) != 0 {
		t.Fatalf("bob lists alice's kernels: %+v", list)
	}
	if call(t, "GET", base+"/api/kernels", "alice-token", &list); len(list) != 1 || list[0].ID != k.ID {
		t.Fatalf("alice's list: %+v", list)
	}
	for _, path := range []string{"", "/interrupt", "/restart"} {
		method := "POST"
		if path == "" {
			method = "GET"
		}
		if code := call(t, method, base+"/api/kernels/"+k.ID+path, "bob-token", nil); code != http.StatusNotFound {
			t.Errorf("bob %s %s: %d, want 404", method, path, code)
		}
	}
	if code := call(t, "DELETE", base+"/api/kernels/"+k.ID, "bob-token", nil); code != http.StatusNotFound {
		t.Errorf("bob DELETE: %d, want 404", code)
	}
	if code := call(t, "GET", base+"/api/kernels", "", nil); code != http.StatusUnauthorized {
		t.Errorf("no token: %d, want 401", code)
	}
	for _, tc := range []struct {
		name, query string
		hdr         http.Header
		status      int
	}{
		{"bob's token", "?token=bob-token", nil, http.StatusNotFound},
		{"no token", "", nil, http.StatusUnauthorized},
		{"a wrong token", "?token=eve", nil, http.StatusUnauthorized},
		{"another origin", "?token=alice-token", http.Header{"Origin": {"http://evil.example"}}, http.StatusForbidden},
	} {
		if _, resp, err := dial(t, base, k.ID, tc.query, tc.hdr); err == nil || resp == nil || resp.StatusCode != tc.status {
			code := 0
			if resp != nil {
				code = resp.StatusCode
			}
			t.Errorf("%s: dial = %v (%d), want %d", tc.name, err, code, tc.status)
		}
	}
	c := mustDial(t, base, k.ID, "?token=alice-token")
	if ms := c.execute("1"); find(ms, "execute_reply") == nil {
		t.Fatalf("alice's own kernel: %+v", ms)
	}
	// Bob still has his own quota and kernels: alice's kernel took
	// nothing of his.
	kb := startKernel(t, base, "bob-token")
	if call(t, "GET", base+"/api/kernels", "bob-token", &list); len(list) != 1 || list[0].ID != kb.ID {
		t.Fatalf("bob's list: %+v", list)
	}
}

// TestStopOnError: after a failed cell, the cells already waiting are
// answered "aborted" (stop_on_error), and the kernel takes the next.
func TestStopOnError(t *testing.T) {
	base := newGateway(t)
	k := startKernel(t, base, "")
	c := mustDial(t, base, k.ID, "")
	ids := []string{
		c.send("shell", "execute_request", map[string]any{"code": "import time\ntime.sleep(0.5)\n1/0"}),
		c.send("shell", "execute_request", map[string]any{"code": "print('never')"}),
		c.send("shell", "execute_request", map[string]any{"code": "print('never')"}),
	}
	want := []string{"error", "aborted", "aborted"}
	for i, id := range ids {
		ms := c.finish(id)
		if r := find(ms, "execute_reply"); r == nil || r["status"] != want[i] {
			t.Fatalf("cell %d: %+v, want %s", i, ms, want[i])
		}
		if streamed(ms, "stdout") != "" {
			t.Fatalf("an aborted cell ran: %+v", ms)
		}
	}
	if r := find(c.execute("2"), "execute_result"); r == nil || r["execution_count"] != 2.0 {
		t.Fatalf("after the aborts: %+v", r)
	}
	// A cell sent once the failed one is complete (its reply and idle
	// status in) was not waiting then: it runs. (It once was aborted when
	// it came in the moment after the idle.)
	for i := range 20 {
		c.execute("1/0")
		if r := find(c.execute("'ran'"), "execute_reply"); r == nil || r["status"] != "ok" {
			t.Fatalf("round %d: the cell after a failed one: %+v", i, r)
		}
	}
}

// TestChannelsHammer: clients on several connections of one kernel send
// cells at once, with other requests between; every request gets exactly
// one reply, on its own connection, and the cells get distinct counts.
func TestChannelsHammer(t *testing.T) {
	base := newGateway(t)
	k := startKernel(t, base, "")
	const conns, cells = 4, 8
	counts := make(chan float64, conns*cells)
	errs := make(chan error, conns)
	for i := range conns {
		c := mustDial(t, base, k.ID, "")
		go func() {
			errs <- func() error {
				pending := map[string]string{}
				for j := range cells {
					pending[c.send("shell", "execute_request", map[string]any{"code": fmt.Sprintf("%d*%d", i, j)})] = "execute_reply"
					pending[c.send("shell", "kernel_info_request", map[string]any{})] = "kernel_info_reply"
				}
				for len(pending) > 0 {
					m := c.recvAsync()
					if m.err != nil {
						return m.err
					}
					if m.channel != "shell" {
						continue
					}
					want, ok := pending[m.parent]
					if !ok || want != m.msgType {
						return fmt.Errorf("connection %d: unexpected %s to %s", i, m.msgType, m.parent)
					}
					delete(pending, m.parent)
					if m.msgType == "execute_reply" {
						counts <- m.content["execution_count"].(float64)
					}
				}
				return nil
			}()
		}()
	}
	for range conns {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	close(counts)
	seen := map[float64]bool{}
	for n := range counts {
		if seen[n] || n < 1 || n > conns*cells {
			t.Fatalf("execution count %v twice or out of 1..%d", n, conns*cells)
		}
		seen[n] = true
	}
}

// recvAsync reads and checks a message, and returns what is wrong
// instead of failing the test (for goroutines other than the test's).
func (c *client) recvAsync() (g struct {
	got
	err error
}) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	typ, b, err := c.ws.Read(ctx)
	if err != nil {
		g.err = err
		return g
	}
	m, err := decodeFrame(typ, b)
	if err != nil {
		g.err = fmt.Errorf("the gateway sent a bad message: %w", err)
		return g
	}
	if m.hdr.Session == "" || m.hdr.Version != protocolVersion || !isUUID(m.hdr.MsgID) {
		g.err = fmt.Errorf("header of %s: %+v", m.hdr.MsgType, m.hdr)
		return g
	}
	var p header
	_ = json.Unmarshal(m.ParentHeader, &p)
	g.channel, g.msgType, g.parent = m.Channel, m.hdr.MsgType, p.MsgID
	if err := json.Unmarshal(m.Content, &g.content); err != nil {
		g.err = fmt.Errorf("content of %s: %w", g.msgType, err)
	}
	return g
}

// TestWebPagesRefused: without a token, the channels and the REST routes
// refuse what only a web page sends: a foreign Host (DNS rebinding) and a
// cross-origin Origin; a bad frame closes the connection with a reason.
// The kernel itself is unharmed and still answers its own client.
func TestWebPagesRefused(t *testing.T) {
	base := newGateway(t)
	k := startKernel(t, base, "")
	for _, tc := range []struct {
		name string
		hdr  http.Header
	}{
		{"rebound host", http.Header{"Host": {"evil.example"}}},
		{"another origin", http.Header{"Origin": {"http://evil.example"}}},
		{"a cross-site fetch", http.Header{"Sec-Fetch-Site": {"cross-site"}}},
	} {
		if _, resp, err := dial(t, base, k.ID, "", tc.hdr); err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: the WebSocket was not refused with 403 (%v)", tc.name, err)
		}
		req, _ := http.NewRequestWithContext(t.Context(), "POST", base+"/api/kernels", strings.NewReader(`{}`))
		req.Header = tc.hdr.Clone()
		req.Host = tc.hdr.Get("Host")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: POST /api/kernels answered %d, want 403", tc.name, resp.StatusCode)
		}
	}
	bad := mustDial(t, base, k.ID, "")
	if err := bad.ws.Write(t.Context(), websocket.MessageText, []byte(`{"header":{}}`)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := bad.ws.Read(t.Context()); websocket.CloseStatus(err) != websocket.StatusInvalidFramePayloadData {
		t.Errorf("a bad frame: %v, want close 1007", err)
	}
	c := mustDial(t, base, k.ID, "", v1Protocol)
	if r := find(c.execute("6*7"), "execute_result"); r == nil || r["data"].(map[string]any)["text/plain"] != "42" {
		t.Fatalf("the kernel after the refusals: %+v", r)
	}
	var list []kernelModel
	if call(t, "GET", base+"/api/kernels", "", &list); len(list) != 1 {
		t.Fatalf("kernels after the refusals: %+v", list)
	}
}

// TestDeadKernel: a kernel whose process ended says so in the cell's
// error and in its model ("dead"); the next cell is told to restart, and a
// restart brings it back under the same id.
func TestDeadKernel(t *testing.T) {
	base := newGateway(t)
	k := startKernel(t, base, "")
	c := mustDial(t, base, k.ID, "")
	ms := c.execute("import os\nos._exit(3)")
	if e := find(ms, "error"); e == nil || !strings.Contains(fmt.Sprint(e["traceback"]), "dead") {
		t.Fatalf("the cell that ended the kernel: %+v", ms)
	}
	var model kernelModel
	if call(t, "GET", base+"/api/kernels/"+k.ID, "", &model); model.ExecutionState != "dead" {
		t.Fatalf("model: %+v, want dead", model)
	}
	ms = c.execute("1")
	if e := find(ms, "error"); e == nil || e["ename"] != "DeadKernelError" || !strings.Contains(e["evalue"].(string), "restart") {
		t.Fatalf("a cell of the dead kernel: %+v", ms)
	}
	if code := call(t, "POST", base+"/api/kernels/"+k.ID+"/restart", "", &model); code != http.StatusOK || model.ExecutionState != "idle" {
		t.Fatalf("restart: %d %+v", code, model)
	}
	if r := find(c.execute("1"), "execute_result"); r == nil || r["execution_count"] != 1.0 {
		t.Fatalf("after the restart: %+v", r)
	}
}

// newTestGateway is newGateway with the configs given, and the Gateway
// and Manager themselves, for tests that look inside.
func newTestGateway(t *testing.T, cfg Config, scfg session.Config, tokens ...string) (string, *Gateway, *session.Manager) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("requires root for the process backend")
	}
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		testenv.MissingFile(t, "/usr/bin/python3")
	}
	state, parent := testenv.StateDir(t, "jupytertest")
	r, err := isolate.New(isolate.Config{StateDir: state, CgroupParent: parent})
	if err != nil {
		testenv.MissingSandbox(t, err)
	}
	scfg.Runner, scfg.Replica = r, "test"
	m := session.NewManager(context.Background(), scfg)
	srv := api.New(nil, api.Config{Tokens: tokens, Sessions: m})
	// As the daemon wires it: cells through the API's, logged and counted.
	cfg.Sessions, cfg.Owner, cfg.Exec = m, api.Owner, srv.Cell
	g := New(context.Background(), cfg)
	for _, r := range g.Routes() {
		srv.Handle(r.Pattern, r.Handler)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(func() {
		ts.CloseClientConnections()
		ts.Close()
		g.Close()
		if err := m.Close(); err != nil {
			t.Errorf("close manager: %v", err)
		}
	})
	return ts.URL, g, m
}

// TestDeletedSessionsDoNotPileUp: a client that deletes its kernels'
// sessions through the session API and starts more, again and again,
// leaves no kernels behind: the gateway holds no more kernels than live
// sessions and the quota (2 here) still applies.
func TestDeletedSessionsDoNotPileUp(t *testing.T) {
	base, g, m := newTestGateway(t, Config{}, session.Config{MaxPerOwner: 2})
	for range 5 {
		k := startKernel(t, base, "")
		for _, s := range m.List("anonymous") {
			if err := m.Delete("anonymous", s.ID); err != nil {
				t.Fatal(err)
			}
		}
		if code := call(t, "GET", base+"/api/kernels/"+k.ID, "", nil); code != http.StatusNotFound {
			t.Fatalf("a kernel whose session was deleted: %d, want 404", code)
		}
	}
	startKernel(t, base, "")
	g.mu.Lock()
	held := len(g.kernels)
	g.mu.Unlock()
	if held != 1 {
		t.Fatalf("the gateway holds %d kernels for 1 live session", held)
	}
	startKernel(t, base, "")
	if code := call(t, "POST", base+"/api/kernels", "", nil); code != http.StatusTooManyRequests {
		t.Fatalf("a third kernel past the quota of 2: %d, want 429", code)
	}
}

// TestReadBudget: while the messages being read hold the whole budget, a
// connection's message is refused with 1013 and a reason, not held; once
// the budget frees, another client is served.
func TestReadBudget(t *testing.T) {
	base, g, _ := newTestGateway(t, Config{MaxMessage: 1 << 20, MaxReading: 1 << 20}, session.Config{})
	k := startKernel(t, base, "")
	size := g.reading.size
	if !g.reading.take(size) {
		t.Fatal("take the whole budget")
	}
	c := mustDial(t, base, k.ID, "")
	c.send("shell", "kernel_info_request", map[string]any{})
	_, _, err := c.ws.Read(t.Context())
	if websocket.CloseStatus(err) != websocket.StatusTryAgainLater || !strings.Contains(err.Error(), "max-body-memory") {
		t.Fatalf("a message past the budget: %v, want close 1013 naming --max-body-memory", err)
	}
	g.reading.give(size)
	c = mustDial(t, base, k.ID, "")
	if ms := c.finish(c.send("shell", "kernel_info_request", map[string]any{})); find(ms, "kernel_info_reply") == nil {
		t.Fatalf("after the budget freed: %+v", ms)
	}
	// The reader gives its reservation back after it handed the message
	// on, which may be a moment after the reply is out.
	var used int64
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		g.reading.mu.Lock()
		used = g.reading.used
		g.reading.mu.Unlock()
		if used == 0 || time.Now().After(deadline) {
			break
		}
	}
	if used != 0 {
		t.Fatalf("%d bytes still reserved 5s after the messages were handled", used)
	}
	// One message of the largest size still fits the budget alone.
	big := strings.Repeat("x", 1<<20-4096)
	if ms := c.execute("len('" + big + "')"); find(ms, "execute_result") == nil {
		t.Fatalf("a message of the largest size: %v", types(ms))
	}
}

// TestOtherKernels: the javascript and ruby kernelspecs run their cells
// in sessions of their runtimes, with results and counts as Python's.
func TestOtherKernels(t *testing.T) {
	base := newGateway(t)
	for _, tc := range []struct{ spec, binary, code, want string }{
		{"javascript", "/usr/bin/node", "let a = 20; a + 22", "42"},
		{"ruby", "/usr/bin/ruby", "a = 20; a + 22", "42"},
	} {
		t.Run(tc.spec, func(t *testing.T) {
			if _, err := os.Stat(tc.binary); err != nil {
				testenv.MissingFile(t, tc.binary)
			}
			req, _ := http.NewRequestWithContext(t.Context(), "POST", base+"/api/kernels", strings.NewReader(`{"name":"`+tc.spec+`"}`))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var k kernelModel
			err = json.NewDecoder(resp.Body).Decode(&k)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusCreated || k.Name != tc.spec {
				t.Fatalf("start %s: %d %+v %v", tc.spec, resp.StatusCode, k, err)
			}
			c := mustDial(t, base, k.ID, "")
			info := find(c.finish(c.send("shell", "kernel_info_request", map[string]any{})), "kernel_info_reply")
			if li, _ := info["language_info"].(map[string]any); li["name"] != tc.spec {
				t.Fatalf("language_info: %v", info)
			}
			r := find(c.execute(tc.code), "execute_result")
			if r == nil || r["execution_count"] != 1.0 || r["data"].(map[string]any)["text/plain"] != tc.want {
				t.Fatalf("%s: %+v", tc.code, r)
			}
		})
	}
	if code := call(t, "POST", base+"/api/kernels", "", nil); code != http.StatusCreated {
		t.Fatalf("a kernel of no name (the default): %d", code)
	}
	req, _ := http.NewRequestWithContext(t.Context(), "POST", base+"/api/kernels", strings.NewReader(`{"name":"cobol"}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(b), "python3") || !strings.Contains(string(b), `"message"`) {
		t.Fatalf("an unknown kernelspec: %d %s, want 404 naming the kernels in Jupyter's error body", resp.StatusCode, b)
	}
}

// TestKeepAlive: while a client is connected and answers pings, its
// kernel's session is kept from expiring (its idle clock restarts); a
// client that never reads fails a ping and is disconnected, while the
// one that reads stays.
func TestKeepAlive(t *testing.T) {
	base, _, m := newTestGateway(t, Config{KeepAlive: 100 * time.Millisecond, WriteTimeout: 2 * time.Second}, session.Config{})
	k := startKernel(t, base, "")
	sessions := m.List("anonymous")
	if len(sessions) != 1 {
		t.Fatalf("sessions: %+v", sessions)
	}
	before := sessions[0].LastUsed
	reader := mustDial(t, base, k.ID, "")
	// Reading answers the pings (the client's library replies while it
	// reads); the other client never reads.
	go func() {
		for {
			if _, _, err := reader.ws.Read(context.Background()); err != nil {
				return
			}
		}
	}()
	mustDial(t, base, k.ID, "")
	connections := func() int {
		var model kernelModel
		call(t, "GET", base+"/api/kernels/"+k.ID, "", &model)
		return model.Connections
	}
	deadline := time.Now().Add(30 * time.Second)
	for m.List("anonymous")[0].LastUsed.Equal(before) {
		if time.Now().After(deadline) {
			t.Fatal("the session's idle clock did not restart while a client was connected")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for n := connections(); n != 1; n = connections() {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections, want 1: the client that never reads is still connected", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The reading client stays through many more pings.
	time.Sleep(3 * time.Second)
	if n := connections(); n != 1 {
		t.Fatalf("%d connections after more pings, want the reading client's", n)
	}
}

// TestCellsCounted: a notebook's cells are counted in the daemon's
// metrics (and logged) as the session API's are.
func TestCellsCounted(t *testing.T) {
	base := newGateway(t)
	k := startKernel(t, base, "")
	c := mustDial(t, base, k.ID, "")
	c.execute("1")
	c.execute("1/0")
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// The kernel's prelude is the gateway's own, not counted.
	for _, want := range []string{`sandboxd_session_cells_total{status="ok"} 1`, `sandboxd_session_cells_total{status="error"} 1`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %s:\n%s", want, grepLines(string(b), "cells_total"))
		}
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
