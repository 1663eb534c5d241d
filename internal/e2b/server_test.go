package e2b

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/sandboxd/sandboxd/internal/errdefs"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/session"
)

// newTestServer is a Server over a Manager without a process backend:
// enough for everything but running sessions (tests/e2b_test.go runs
// those against a daemon).
func newTestServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	m := session.NewManager(t.Context(), session.Config{RunnerErr: errors.New("no backend in unit tests")})
	t.Cleanup(func() { _ = m.Close() })
	cfg.Sessions = m
	s := New(cfg)
	t.Cleanup(s.Close)
	return s
}

func TestWorkspaceName(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"/home/user", ".", true},
		{"/home/user/", ".", true},
		{"/home/user/a.txt", "a.txt", true},
		{"/home/user/d/../b.txt", "b.txt", true},
		{"a/b.txt", "a/b.txt", true},
		{"", ".", true},
		{"/workspace/x", "x", true},
		{"/home/user/../../etc/passwd", "", false},
		{"/etc/passwd", "", false},
		{"/home/username/x", "", false},
		{"../x", "", false},
	} {
		got, err := workspaceName(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("workspaceName(%q) = %q, %v; want %q (ok %v)", tc.in, got, err, tc.want, tc.ok)
		}
		if err != nil && !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("workspaceName(%q): error %v is not an invalid argument", tc.in, err)
		}
	}
}

func TestHostRoute(t *testing.T) {
	s := &Server{cfg: Config{Domain: "sbx.example.com"}}
	for host, want := range map[string]string{
		"49983-vm-abc.sbx.example.com":      "vm-abc",
		"49999-vm-abc.SBX.example.com:8080": "vm-abc",
		"sbx.example.com":                   "",
		"49983-vm-abc.other.com":            "",
		"a.49983-vm-abc.sbx.example.com":    "",
		"nodash.sbx.example.com":            "",
		"127.0.0.1:8080":                    "",
	} {
		if got := s.hostRoute(host); got != want {
			t.Errorf("hostRoute(%q) = %q, want %q", host, got, want)
		}
	}
	if got := (&Server{}).hostRoute("49983-vm-abc.sbx.example.com"); got != "" {
		t.Errorf("without a domain, hostRoute = %q", got)
	}
}

// TestCreateRefusals: what sandboxd does not offer is a 501 naming it, a
// bad timeout a 400 naming the bound; both before any session starts.
func TestCreateRefusals(t *testing.T) {
	s := newTestServer(t, Config{Tokens: []string{"key"}, MaxTimeout: time.Hour})
	for body, want := range map[string]struct {
		status int
		says   string
	}{
		`{"templateID":"my-custom"}`:          {501, "custom templates are not offered"},
		`{"autoPause":true}`:                  {501, "pause and resume are not offered"},
		`{"allow_internet_access":true}`:      {501, "no network"},
		`{"mcp":{"x":{}}}`:                    {501, "MCP gateway"},
		`{"volumeMounts":[{"name":"v"}]}`:     {501, "volumes are not offered"},
		`{"timeout":0}`:                       {400, "between 1 s and 3600 s"},
		`{"timeout":7200}`:                    {400, "between 1 s and 3600 s"},
		`{"timeout":"x"}`:                     {400, "request body"},
		`{"templateID":"base","timeout":300}`: {503, "process backend"},
	} {
		req := httptest.NewRequest("POST", "/v2/sandboxes", strings.NewReader(body))
		req.Header.Set("X-API-KEY", "key")
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		var e apiError
		_ = json.Unmarshal(rec.Body.Bytes(), &e)
		if rec.Code != want.status || e.Code != want.status || !strings.Contains(e.Message, want.says) {
			t.Errorf("%s: %d %s; want %d saying %q", body, rec.Code, rec.Body, want.status, want.says)
		}
	}
}

// TestAuth: the control plane wants a daemon token as the API key; a
// sandbox call names a sandbox, and one not running is E2B's 502, which
// the SDK reads as "not running".
func TestAuth(t *testing.T) {
	s := newTestServer(t, Config{Tokens: []string{"key-a", "key-b"}})
	for _, tc := range []struct {
		name   string
		path   string
		header map[string]string
		status int
	}{
		{"no key", "/v2/sandboxes", nil, 401},
		{"bad key", "/v2/sandboxes", map[string]string{"X-API-KEY": "key-c"}, 401},
		{"a key's prefix", "/v2/sandboxes", map[string]string{"X-API-KEY": "key-"}, 401},
		{"good key", "/v2/sandboxes", map[string]string{"X-API-KEY": "key-b"}, 200},
		{"bearer", "/v2/sandboxes", map[string]string{"Authorization": "Bearer key-a"}, 200},
		{"not offered", "/templates", map[string]string{"X-API-KEY": "key-a"}, 501},
		{"unknown sandbox", "/health", map[string]string{headerSandboxID: "vm-nope", "X-Access-Token": "x"}, 502},
	} {
		req := httptest.NewRequest("GET", tc.path, nil)
		for k, v := range tc.header {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code != tc.status {
			t.Errorf("%s: %d %s; want %d", tc.name, rec.Code, rec.Body, tc.status)
		}
	}
}

// TestResultEvent: MIME types become E2B's keys; unknown ones are kept
// by their type; JSON is a value, not a string.
func TestResultEvent(t *testing.T) {
	ev := resultEvent(run.MIMEBundle{"text/plain": "42", "image/png": "iVBO", "text/html": "<b>", "application/json": `{"a":1}`, "application/x-foo": "f"}, true)
	want := map[string]any{"type": "result", "is_main_result": true, "text": "42", "png": "iVBO", "html": "<b>", "json": map[string]any{"a": 1.0}, "application/x-foo": "f"}
	got, _ := json.Marshal(ev)
	wantJSON, _ := json.Marshal(want)
	if string(got) != string(wantJSON) {
		t.Errorf("resultEvent = %s, want %s", got, wantJSON)
	}
}

// streamEvents runs writes through a textStream and returns the texts of
// the events it sent.
func streamEvents(t *testing.T, writes []string, wait time.Duration) []string {
	t.Helper()
	rec := httptest.NewRecorder()
	out := newNDJSON(rec)
	ts := &textStream{out: out, typ: "stdout", now: time.Now}
	for _, w := range writes {
		_, _ = ts.Write([]byte(w))
	}
	time.Sleep(wait)
	ts.flush()
	out.close()
	var texts []string
	for _, line := range strings.Split(strings.TrimSpace(rec.Body.String()), "\n") {
		if line == "" {
			continue
		}
		var ev struct{ Type, Text, Timestamp string }
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if ev.Type != "stdout" || ev.Timestamp == "" {
			t.Errorf("event %s: want type stdout with a timestamp", line)
		}
		texts = append(texts, ev.Text)
	}
	return texts
}

func TestTextStream(t *testing.T) {
	// A print's text and its newline, written apart, are one event.
	if got := streamEvents(t, []string{"first", "\n", "sec", "ond\nthi"}, 0); strings.Join(got, "|") != "first\n|second\n|thi" {
		t.Errorf("lines: %q", got)
	}
	// A partial line goes out after its delay, without a UTF-8 sequence
	// cut in two; the rest of it at the end.
	snow := "☃"
	got := streamEvents(t, []string{"progress " + snow[:1]}, 5*partialDelay)
	if len(got) != 2 || got[0] != "progress " || !utf8.ValidString(got[1]) {
		t.Errorf("partial line: %q", got)
	}
}

// TestHostRouter: a sandbox host name's request reaches next under the
// prefix, its query and escapes kept; any other host's as it came.
func TestHostRouter(t *testing.T) {
	var got string
	next := http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { got = r.URL.EscapedPath() + "?" + r.URL.RawQuery })
	h := (&Server{cfg: Config{Domain: "e2b.test"}}).HostRouter("/e2b", next)
	for _, tc := range []struct{ host, target, want string }{
		{"49983-vm-a.e2b.test", "/files?path=a%2Fb", "/e2b/files?path=a%2Fb"},
		{"49983-vm-a.e2b.test:443", "/x%2Fy", "/e2b/x%2Fy?"},
		{"api.e2b.test", "/sandboxes", "/sandboxes?"},
		{"127.0.0.1:8080", "/v1/runs", "/v1/runs?"},
	} {
		req := httptest.NewRequest("GET", tc.target, nil)
		req.Host = tc.host
		h.ServeHTTP(httptest.NewRecorder(), req)
		if got != tc.want {
			t.Errorf("%s%s reached next as %q, want %q", tc.host, tc.target, got, tc.want)
		}
	}
	if (&Server{}).HostRouter("/e2b", next) == nil {
		t.Error("no handler without a domain")
	}
}

// TestEnvCells: the variables reach a kernel's cell as base64 only, so
// no value is code; a runtime without the cells says so.
func TestEnvCells(t *testing.T) {
	evil := map[string]string{"A": "\"); __import__('os').system('id') #\n`${process.exit()}`"}
	for _, rt := range []string{"python", "javascript"} {
		set, restore, ok := envCells(rt, evil)
		if !ok || restore == "" {
			t.Fatalf("%s: no env cells", rt)
		}
		if strings.Contains(set, "system") || strings.Contains(set, "process.exit") {
			t.Errorf("%s: a value appears as code: %s", rt, set)
		}
	}
	if _, _, ok := envCells("ruby", evil); ok {
		t.Error("ruby has env cells")
	}
}
