package api

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"path"
	"strings"
	"testing"

	"github.com/sandboxd/sandboxd/internal/errdefs"
)

// FuzzDecodeRunRequest: whatever a client sends, decoding it as a run
// request (decodeStrict, which handleRun's decodeRequest uses) and turning it
// into a spec never panics, and a request that passes is one the executor
// checked.
func FuzzDecodeRunRequest(f *testing.F) {
	for _, s := range []string{
		`{"runtime":"python","code":"print(1)"}`,
		`{"files":[{"name":"a.py","content":"AAE=","encoding":"base64"}],"limits":{"memory":"1GiB","timeout":1.5}}`,
		`{"runtime":"c","code":"int main(){}","compile_limits":{"timeout":"20s"}}`,
		`{"files":[{"name":"../x","content":""}]}`,
		`{"limits":{"pids":-1}}`, `[]`, `null`, `{"env":{"A":"B"}}`,
		`{"runtime":"python","code":"x"}]`, `{"runtime":"python","code":"x"}}`,
	} {
		f.Add(s)
	}
	x := newFake()
	f.Fuzz(func(t *testing.T, body string) {
		req := new(RunRequest)
		err := decodeStrict(strings.NewReader(body), req)
		if err != nil {
			if classOf(err) != errdefs.ErrInvalidArgument && classOf(err) != errdefs.ErrTooLarge {
				t.Fatalf("decode error of class %v: %v", classOf(err), err)
			}
			return
		}
		spec, err := SpecOf(req, x.reg)
		if err == nil {
			_, err = x.Plan(spec)
		}
		if err != nil {
			if errdefs.HTTPStatus(classOf(err)) != 400 {
				t.Fatalf("spec error maps to %d: %v", errdefs.HTTPStatus(classOf(err)), err)
			}
			return
		}
		if len(spec.Files) == 0 {
			t.Fatal("a spec without files passed")
		}
	})
}

// FuzzSessionPath: whatever request line a client sends, a path that
// names something under /v1/sessions is never redirected (ServeMux's
// answer to a path it would clean) and never reaches a handler with a
// "." or ".." segment, a NUL or a backslash in it: it is refused first.
func FuzzSessionPath(f *testing.F) {
	for _, s := range []string{
		"/v1/sessions/a-b/files/x.csv", "/v1/sessions/a-b/files/../../etc/passwd", "/v1/sessions/a-b/files/%2e%2e",
		"/v1/sessions/a-b/files/%2F..%2Fx", "/v1/sessions/a-b/files//etc/passwd", `/v1/sessions/a-b/files/a\b`,
		"/v1/sessions/a-b/files/a%00b", "/v1/runs/../sessions/a-b", "//v1/sessions", "/v1/sessions/./a-b", "/v1/sessions/",
	} {
		f.Add(s)
	}
	s := newServer(newFake(), Config{})
	f.Fuzz(func(t *testing.T, target string) {
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader("GET " + target + " HTTP/1.1\r\nHost: localhost\r\n\r\n")))
		if err != nil {
			return
		}
		dec := req.URL.Path
		if !underSessions(path.Clean("/" + dec)) {
			return
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code >= 300 && rec.Code < 400 {
			t.Fatalf("%q: redirected (%d) to %q", target, rec.Code, rec.Header().Get("Location"))
		}
		if rec.Code != 400 {
			// Routed (503: no manager here) or unknown (404): the path
			// had nothing to clean.
			for _, seg := range strings.Split(dec, "/") {
				if seg == "." || seg == ".." || strings.ContainsAny(seg, "\x00\\") {
					t.Fatalf("%q: answered %d with segment %q", target, rec.Code, seg)
				}
			}
		}
	})
}
