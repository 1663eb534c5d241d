package api

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/sandboxd/sandboxd/internal/admission"
	"github.com/sandboxd/sandboxd/internal/errdefs"
	"github.com/sandboxd/sandboxd/internal/session"
	"github.com/sandboxd/sandboxd/internal/wire"
	"github.com/sandboxd/sandboxd/internal/workspace"
)

// newManager is a session manager with no process backend: it finds,
// lists and validates, and every Create fails with errdefs.ErrUnavailable, so the
// routes can be tested without root.
func newManager(t *testing.T) *session.Manager {
	t.Helper()
	m := session.NewManager(context.Background(), session.Config{Replica: "here", RunnerErr: errors.New("no backend in unit tests")})
	t.Cleanup(func() { m.Close() })
	return m
}

// sessionRoutes is one request of each session route.
var sessionRoutes = []struct{ method, path, body string }{
	{"POST", "/v1/sessions", `{}`},
	{"GET", "/v1/sessions", ""},
	{"GET", "/v1/sessions/here-x", ""},
	{"DELETE", "/v1/sessions/here-x", ""},
	{"POST", "/v1/sessions/here-x/exec", `{"code":"1"}`},
	{"GET", "/v1/sessions/here-x/files", ""},
	{"PUT", "/v1/sessions/here-x/files/a.txt", "x"},
	{"GET", "/v1/sessions/here-x/files/a.txt", ""},
	{"DELETE", "/v1/sessions/here-x/files/a.txt", ""},
}

func TestSessionsWithoutManager(t *testing.T) {
	s := newServer(newFake(), Config{})
	for _, r := range sessionRoutes {
		rec := do(t, s, r.method, r.path, r.body)
		if rec.Code != 503 || errCode(t, rec) != "unavailable" || !strings.Contains(rec.Body.String(), "no session manager") {
			t.Errorf("%s %s: %d %s, want 503 saying there is no session manager", r.method, r.path, rec.Code, rec.Body.String())
		}
	}
}

// TestSessionPathTraversal: a session path that is not clean is refused
// before routing (ServeMux would redirect it), whatever the method, the
// session or the manager, and encoded forms too.
func TestSessionPathTraversal(t *testing.T) {
	paths := []string{
		"/v1/sessions/here-x/files/..",
		"/v1/sessions/here-x/files/%2e%2e",
		"/v1/sessions/here-x/files/%2E%2E/etc/passwd",
		"/v1/sessions/here-x/files/a/../b",
		"/v1/sessions/here-x/files/a/%2e%2e/b",
		"/v1/sessions/here-x/files/./a",
		"/v1/sessions/here-x/files/.",
		"/v1/sessions/here-x/files//etc/passwd",
		"/v1/sessions/here-x/files/%2F..%2F..%2Fetc%2Fpasswd",
		"/v1/sessions/here-x/files/%2Fetc%2Fpasswd",
		"/v1/sessions/here-x/files/a%5Cb",
		`/v1/sessions/here-x/files/a\b`,
		`/v1/sessions/here-x/files/..\..\etc\passwd`,
		"/v1/sessions/here-x/files/a%00b",
		"/v1/sessions/here-x/files/%00",
		"/v1/sessions/../runs",
		"/v1/sessions/%2e%2e/files/a",
		"/v1/sessions/here-x/../other-y/files/a",
		"/v1/sessions//files/a",
		"/v1/runs/../sessions/here-x",
		"/v1/runs/%2e%2e/sessions/here-x",
		"//v1/sessions/here-x",
		"/v1/sessions/here-x/files/a//b",
	}
	for _, withManager := range []bool{false, true} {
		cfg := Config{}
		if withManager {
			cfg.Sessions = newManager(t)
		}
		s := newServer(newFake(), cfg)
		for _, p := range paths {
			for _, method := range []string{"GET", "PUT", "DELETE", "POST"} {
				rec := do(t, s, method, p, "x")
				if rec.Code != 400 || errCode(t, rec) != "invalid_argument" || !strings.Contains(rec.Body.String(), "not allowed") {
					t.Errorf("manager %v: %s %s: %d %s, want 400 path not allowed", withManager, method, p, rec.Code, rec.Body.String())
				}
				if loc := rec.Header().Get("Location"); loc != "" {
					t.Errorf("%s %s: redirected to %s", method, p, loc)
				}
			}
		}
	}
	// Clean paths, an encoded slash in a file name included, are routed.
	s := newServer(newFake(), Config{Sessions: newManager(t)})
	for _, p := range []string{"/v1/sessions/here-x/files/a%2Fb", "/v1/sessions/here-x/files/data/x.csv", "/v1/sessions/here-x/files/..a/b..", "/v1/sessions/here-x"} {
		if rec := do(t, s, "GET", p, ""); rec.Code != 404 || errCode(t, rec) != "not_found" {
			t.Errorf("GET %s: %d %s, want 404 for the unknown session", p, rec.Code, rec.Body.String())
		}
	}
}

// TestSessionRequests: strict bodies, unknown sessions and the routes'
// answers without a process backend.
func TestSessionRequests(t *testing.T) {
	s := newServer(newFake(), Config{Sessions: newManager(t), MaxBody: 4096})
	cases := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"create: unknown field", "POST", "/v1/sessions", `{"runtime":"python","limts":{}}`, 400, "invalid_argument"},
		{"create: malformed", "POST", "/v1/sessions", `{"runtime":`, 400, "invalid_argument"},
		{"create: trailing data", "POST", "/v1/sessions", `{} {}`, 400, "invalid_argument"},
		{"create: trailing bracket", "POST", "/v1/sessions", `{}]`, 400, "invalid_argument"},
		{"create: not an object", "POST", "/v1/sessions", `[]`, 400, "invalid_argument"},
		{"create: bad unit", "POST", "/v1/sessions", `{"limits":{"memory":"12XB"}}`, 400, "invalid_argument"},
		{"create: above ceiling", "POST", "/v1/sessions", `{"limits":{"memory":"100GiB"}}`, 400, "invalid_argument"},
		{"create: unknown runtime", "POST", "/v1/sessions", `{"runtime":"cobol"}`, 400, "invalid_argument"},
		{"create: runtime without kernel", "POST", "/v1/sessions", `{"runtime":"c"}`, 400, "invalid_argument"},
		{"create: idle timeout too short", "POST", "/v1/sessions", `{"idle_timeout":"10ms"}`, 400, "invalid_argument"},
		{"create: bad file name", "POST", "/v1/sessions", `{"files":[{"name":"../x","content":""}]}`, 400, "invalid_argument"},
		{"create: too large", "POST", "/v1/sessions", `{"env":{"A":"` + strings.Repeat("x", 5000) + `"}}`, 413, "payload_too_large"},
		{"create: no backend", "POST", "/v1/sessions", `{"runtime":"python","idle_timeout":"5s"}`, 503, "unavailable"},
		{"exec: unknown field", "POST", "/v1/sessions/here-x/exec", `{"code":"1","timout":"1s"}`, 400, "invalid_argument"},
		{"exec: trailing data", "POST", "/v1/sessions/here-x/exec", `{"code":"1"}{}`, 400, "invalid_argument"},
		{"exec: bad timeout", "POST", "/v1/sessions/here-x/exec", `{"code":"1","timeout":"-1s"}`, 400, "invalid_argument"},
		{"exec: code too large", "POST", "/v1/sessions/here-x/exec", `{"code":"` + strings.Repeat("x", 5000) + `"}`, 413, "payload_too_large"},
		{"exec: unknown session", "POST", "/v1/sessions/here-x/exec", `{"code":""}`, 404, "not_found"},
		{"get: unknown session", "GET", "/v1/sessions/here-x", "", 404, "not_found"},
		{"get: id of no replica", "GET", "/v1/sessions/x", "", 404, "not_found"},
		{"delete: unknown session", "DELETE", "/v1/sessions/here-x", "", 404, "not_found"},
		{"files: unknown session", "GET", "/v1/sessions/here-x/files", "", 404, "not_found"},
		{"file get: unknown session", "GET", "/v1/sessions/here-x/files/a", "", 404, "not_found"},
		{"file put: unknown session", "PUT", "/v1/sessions/here-x/files/a", "x", 404, "not_found"},
		{"file delete: unknown session", "DELETE", "/v1/sessions/here-x/files/a", "", 404, "not_found"},
		{"session: wrong method", "PUT", "/v1/sessions/here-x", "", 405, "method_not_allowed"},
		{"exec: wrong method", "GET", "/v1/sessions/here-x/exec", "", 405, "method_not_allowed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := do(t, s, c.method, c.path, c.body)
			if rec.Code != c.status || errCode(t, rec) != c.code {
				t.Errorf("got %d %s, want %d %s", rec.Code, rec.Body.String(), c.status, c.code)
			}
			if rec.Header().Get(ReplicaHeader) != "" {
				t.Errorf("%s set for a session of this replica", ReplicaHeader)
			}
		})
	}
	rec := do(t, s, "GET", "/v1/sessions", "")
	if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != `{"sessions":[]}` {
		t.Errorf("list: %d %s", rec.Code, rec.Body.String())
	}
	// A session of another replica: 404, and the header names where.
	rec = do(t, s, "POST", "/v1/sessions/other-1-abcdefghijklmnopqrstuvwxyz/exec", `{"code":"1"}`)
	if rec.Code != 404 || errCode(t, rec) != "not_found" || rec.Header().Get(ReplicaHeader) != "other-1" {
		t.Errorf("elsewhere: %d %s %s=%q", rec.Code, rec.Body.String(), ReplicaHeader, rec.Header().Get(ReplicaHeader))
	}
	metrics := do(t, s, "GET", "/metrics", "").Body.String()
	for _, want := range []string{"sandboxd_sessions_active 0", `sandboxd_requests_rejected_total{reason="invalid"}`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestFileMode(t *testing.T) {
	for _, c := range []struct {
		in   string
		want os.FileMode
		ok   bool
	}{
		{"", 0o644, true}, {"0644", 0o644, true}, {"755", 0o755, true}, {"0o600", 0o600, true}, {"0777", 0o777, true},
		{"0", 0, false}, {"01000", 0, false}, {"4755", 0, false}, {"0x1ff", 0, false}, {"rw", 0, false}, {"-1", 0, false}, {"9", 0, false},
	} {
		got, err := fileMode(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("fileMode(%q) = %o, %v", c.in, got, err)
		}
		if err != nil && classOf(err) != errdefs.ErrInvalidArgument {
			t.Errorf("fileMode(%q): error of class %v", c.in, classOf(err))
		}
	}
}

// TestAttachment: whatever a file is called, its Content-Disposition is
// one header line that gives back the base name.
func TestAttachment(t *testing.T) {
	for _, name := range []string{"a.csv", "dir/plot.png", `q"uote.txt`, "new\r\nline: x", "naïve résumé.txt", "semi;colon=x", "tab\tbed", "\x7f"} {
		v := attachment(name)
		if strings.ContainsAny(v, "\r\n") {
			t.Errorf("%q: header %q has a line break", name, v)
		}
		typ, params, err := mime.ParseMediaType(v)
		want := name[strings.LastIndex(name, "/")+1:]
		if err != nil || typ != "attachment" || params["filename"] != want {
			t.Errorf("%q: header %q parses as %q %q (%v)", name, v, typ, params, err)
		}
	}
}

func TestSessionErrorClasses(t *testing.T) {
	for _, c := range []struct {
		err    error
		status int
	}{
		{session.ErrInvalid, 400}, {workspace.ErrBadFileName, 400}, {workspace.ErrNotRegular, 400},
		{session.ErrNotFound, 404}, {workspace.ErrFileNotFound, 404}, {&session.ElsewhereError{ID: "a-b", Replica: "a", Here: "c"}, 404},
		{session.ErrTooMany, 429}, {session.ErrDead, 409}, {workspace.ErrDirNotEmpty, 409},
		{workspace.ErrFileTooLarge, 413}, {&http.MaxBytesError{Limit: 1}, 413}, {workspace.ErrFull, 507},
		{session.ErrUnavailable, 503},
		// A spec's file that does not fit is the spec's fault.
		{fmt.Errorf("%w: %w", session.ErrInvalid, workspace.ErrFull), 400},
	} {
		wrapped := fmt.Errorf("doing something: %w", c.err)
		if got := errdefs.HTTPStatus(classOf(wrapped)); got != c.status {
			t.Errorf("%v → %d, want %d", c.err, got, c.status)
		}
		status, body := errorBody(wrapped)
		if status != c.status || body.Error.Code == "" {
			t.Errorf("%v: body %d %+v", c.err, status, body)
		}
	}
}

// TestSessionQuotaNoRetryAfter: a session quota's 429 has no Retry-After
// (waiting does not free it); the run queue's has.
func TestSessionQuotaNoRetryAfter(t *testing.T) {
	rec := httptest.NewRecorder()
	writeError(rec, fmt.Errorf("create: %w", session.ErrTooMany))
	if rec.Code != 429 || rec.Header().Get("Retry-After") != "" {
		t.Errorf("session quota: %d, Retry-After %q", rec.Code, rec.Header().Get("Retry-After"))
	}
	rec = httptest.NewRecorder()
	writeError(rec, fmt.Errorf("run: %w", admission.ErrQueueFull))
	if rec.Code != 429 || rec.Header().Get("Retry-After") == "" {
		t.Errorf("run queue: %d, Retry-After %q", rec.Code, rec.Header().Get("Retry-After"))
	}
}

// TestEventWriterClose: after finish, a late chunk (a drain still holding
// the writer) writes nothing; before, concurrent chunks are whole lines.
func TestEventWriterClose(t *testing.T) {
	rec := httptest.NewRecorder()
	ew := newEventWriter(rec, cellEvents)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 50; j++ {
				ew.output("stdout").Write([]byte("x"))
			}
		}()
	}
	wg.Wait()
	ew.finish(wire.CellEvent{Type: "result"}, nil, func(error) { t.Error("plain answer after events") })
	n := len(rec.Body.String())
	if _, err := ew.output("stderr").Write([]byte("late")); err != nil {
		t.Errorf("a late write fails its writer: %v", err)
	}
	if err := ew.emit(wire.CellEvent{Type: "display"}); !errors.Is(err, errStreamClosed) {
		t.Errorf("emit after finish: %v", err)
	}
	if len(rec.Body.String()) != n || strings.Count(rec.Body.String(), "\n") != 401 {
		t.Errorf("%d lines, body grew from %d to %d", strings.Count(rec.Body.String(), "\n"), n, len(rec.Body.String()))
	}

	// Failing before any event: a plain answer, and nothing after it.
	rec = httptest.NewRecorder()
	ew = newEventWriter(rec, cellEvents)
	ew.finish(nil, fmt.Errorf("x: %w", session.ErrDead), func(err error) { writeError(rec, err) })
	ew.output("stdout").Write([]byte("late"))
	if rec.Code != 409 || errCode(t, rec) != "conflict" {
		t.Errorf("failed stream: %d %s", rec.Code, rec.Body.String())
	}
}
