package api

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/admission"
	"github.com/sandboxd/sandboxd/internal/session"
)

// post is a POST of a body of declared length n that the test feeds (or
// never finishes) through the returned writer.
func post(n int64, token string) (*http.Request, *io.PipeWriter) {
	pr, pw := io.Pipe()
	req := httptest.NewRequest("POST", "/v1/runs", pr)
	req.ContentLength = n
	req.Host = "localhost:8080"
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return req, pw
}

// TestBodyBudget: bodies being read hold their declared length; past the
// budget, or past half of it for one client, a request is refused at once;
// reading a body to its end, closing it or the handler's return gives its
// share back; uploads, streamed to the workspace, hold none.
func TestBodyBudget(t *testing.T) {
	const mib = 1 << 20
	b := newBodyBudget(2*mib, mib)
	r1, _ := post(mib, "")
	rel1, err := b.reserve(r1, "a")
	if err != nil {
		t.Fatalf("first body refused: %v", err)
	}
	if _, err := b.reserve(httptestPost(1), "a"); err == nil || !strings.Contains(err.Error(), "one client may") {
		t.Errorf("a client past half the budget: %v, want refused naming the per-client share", err)
	}
	r3, pw3 := post(mib, "")
	rel3, err := b.reserve(r3, "b")
	if err != nil {
		t.Fatalf("another client's body refused: %v", err)
	}
	if _, err := b.reserve(httptestPost(1), "c"); err == nil || !strings.Contains(err.Error(), "--max-body-memory") {
		t.Errorf("past the whole budget: %v, want refused naming the flag", err)
	}
	// A body read to its end gives its share back before the handler ends.
	go func() { pw3.Write([]byte("{}")); pw3.Close() }()
	if _, err := io.ReadAll(r3.Body); err != nil {
		t.Fatal(err)
	}
	rel4, err := b.reserve(httptestPost(1), "c")
	if err != nil {
		t.Errorf("after a body was read: %v", err)
	}
	rel4()
	rel3()
	rel3() // idempotent
	rel1()
	if b.used != 0 || len(b.by) != 0 {
		t.Errorf("after every release: used %d, by %v", b.used, b.by)
	}
	put := httptest.NewRequest("PUT", "/v1/sessions/x/files/a", strings.NewReader(strings.Repeat("x", 10)))
	put.ContentLength = 100 * mib
	if _, err := b.reserve(put, "a"); err != nil || b.used != 0 {
		t.Errorf("an upload: %v, used %d; want no share taken", err, b.used)
	}
}

func httptestPost(n int) *http.Request {
	return httptest.NewRequest("POST", "/v1/runs", strings.NewReader(strings.Repeat(" ", n)))
}

// TestBodyBudgetThroughServer: while one tenant trickles large bodies in,
// its next large request is a 429 that names the flag, and another
// tenant's run still goes through.
func TestBodyBudgetThroughServer(t *testing.T) {
	s := newServer(newFake(), Config{MaxBody: 1 << 20, MaxBodyMemory: 2 << 20, Tokens: []string{"ta", "tb"}})
	// Tenant A's first body: declared at the cap, never finished.
	slow, pw := post(1<<20, "ta")
	done := make(chan struct{})
	go func() { defer close(done); s.ServeHTTP(httptest.NewRecorder(), slow) }()
	defer func() { pw.CloseWithError(io.ErrUnexpectedEOF); <-done }()
	waitFor(t, func() bool { s.bodies.mu.Lock(); defer s.bodies.mu.Unlock(); return s.bodies.used > 0 })

	rec := do(t, s, "POST", "/v1/runs", `{"runtime":"python","code":"print(1)"}`, "Authorization", "Bearer ta", "Content-Type", "application/json")
	if rec.Code != http.StatusTooManyRequests || !strings.Contains(rec.Body.String(), "max-body-memory") {
		t.Errorf("tenant A's second request: %d %s, want 429 naming --max-body-memory", rec.Code, rec.Body)
	}
	rec = do(t, s, "POST", "/v1/runs", `{"runtime":"python","code":"print(1)"}`, "Authorization", "Bearer tb", "Content-Type", "application/json")
	if rec.Code != http.StatusOK {
		t.Errorf("tenant B's run while A holds half the budget: %d %s", rec.Code, rec.Body)
	}
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
	}
}

// TestBodyClient: E2B's keys and access tokens each get a share of their
// own, as bearer tokens do; requests without any share the anonymous one.
func TestBodyClient(t *testing.T) {
	req := func(h ...string) *http.Request {
		r := httptest.NewRequest("POST", "/e2b/execute", nil)
		for i := 0; i+1 < len(h); i += 2 {
			r.Header.Set(h[i], h[i+1])
		}
		return r
	}
	keys := map[string]string{
		"bearer a": bodyClient(req("Authorization", "Bearer a")),
		"bearer b": bodyClient(req("Authorization", "Bearer b")),
		"key a":    bodyClient(req("X-API-KEY", "a")),
		"key b":    bodyClient(req("X-API-KEY", "b")),
		"access a": bodyClient(req("X-Access-Token", "a")),
		"none":     bodyClient(req()),
	}
	seen := map[string]string{}
	for name, k := range keys {
		if other, dup := seen[k]; dup {
			t.Errorf("%s and %s share the body budget key %q", name, other, k)
		}
		seen[k] = name
	}
}

// TestTenant: every request reaches its handler with its tenant in the
// context, for the admission gates: its token's owner, an E2B key's, or
// without a credential its client's address (two hosts, two tenants; an
// IPv6 /64 is one host, as for the connection cap).
func TestTenant(t *testing.T) {
	s := New(newFake(), Config{Tokens: []string{"tok"}})
	var got string
	s.Mount("/probe", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = admission.Tenant(r.Context()) }))
	for _, tc := range []struct {
		name, remote string
		hdr          []string
		want         string
	}{
		{"token", "192.0.2.1:1000", []string{"Authorization", "Bearer tok"}, session.TokenOwner("tok")},
		{"e2b key", "192.0.2.1:1000", []string{"X-API-KEY", "k"}, "X-API-KEY:" + session.TokenOwner("k")},
		{"address", "192.0.2.1:1000", nil, "address 192.0.2.1"},
		{"another address", "[2001:db8::1]:1000", nil, "address 2001:db8::"},
		{"the same IPv6 /64", "[2001:db8::2:1]:1000", nil, "address 2001:db8::"},
		{"IPv4 in IPv6", "[::ffff:192.0.2.1]:1000", nil, "address 192.0.2.1"},
	} {
		got = "unset"
		req := httptest.NewRequest("GET", "/probe/x", nil)
		req.Host, req.RemoteAddr = "localhost:8080", tc.remote
		for i := 0; i+1 < len(tc.hdr); i += 2 {
			req.Header.Set(tc.hdr[i], tc.hdr[i+1])
		}
		s.ServeHTTP(httptest.NewRecorder(), req)
		if got != tc.want {
			t.Errorf("%s: tenant %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestBulkBodiesOneAtATime: a body past bulkBody, or of unknown length,
// is read whole and decoded while holding the server's one bulk slot,
// so two are never decoded at once; small bodies do not wait for it. It
// is decoded as strictly as a small one, and one past MaxBody is a 413.
func TestBulkBodiesOneAtATime(t *testing.T) {
	s := New(newFake(), Config{MaxBody: 4 << 20})
	big := `{"runtime":"python","code":"#` + strings.Repeat("x", 2<<20) + `"}`
	post := func(body string, chunked bool) *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", "/v1/runs", strings.NewReader(body))
		req.Host = "localhost:8080"
		req.Header.Set("Content-Type", "application/json")
		if chunked {
			req.ContentLength = -1
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		return rec
	}

	s.bulk <- struct{}{} // another large body is being decoded
	done := make(chan *httptest.ResponseRecorder)
	go func() { done <- post(big, false) }()
	if rec := post(`{"runtime":"python","code":"print(1)"}`, false); rec.Code != 200 {
		t.Fatalf("a small run while a large body waits: %d %s", rec.Code, rec.Body)
	}
	select {
	case rec := <-done:
		t.Fatalf("a large body was decoded while another held the bulk slot: %d", rec.Code)
	case <-time.After(100 * time.Millisecond):
	}
	<-s.bulk
	if rec := <-done; rec.Code != 200 {
		t.Errorf("the large run, once its turn came: %d %s", rec.Code, rec.Body)
	}

	if rec := post(big, true); rec.Code != 200 {
		t.Errorf("a large chunked run: %d %s", rec.Code, rec.Body)
	}
	if rec := post(`{"runtime":"python","codes":"#`+strings.Repeat("x", 2<<20)+`"}`, false); rec.Code != 400 || !strings.Contains(rec.Body.String(), "codes") {
		t.Errorf("a large body with an unknown field: %d %.200s", rec.Code, rec.Body)
	}
	if rec := post(`{"runtime":"python","code":"#`+strings.Repeat("x", 5<<20)+`"}`, true); rec.Code != 413 {
		t.Errorf("a chunked body past MaxBody: %d %.200s", rec.Code, rec.Body)
	}
	// Piston's execute, decoded leniently, takes the same path.
	req := httptest.NewRequest("POST", "/api/v2/execute", strings.NewReader(`{"language":"python","version":"*","files":[{"content":"#`+strings.Repeat("x", 2<<20)+`"}]}`))
	req.Host = "localhost:8080"
	req.ContentLength = -1
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Errorf("a large chunked Piston execute: %d %.200s", rec.Code, rec.Body)
	}
	if len(s.bulk) != 0 {
		t.Error("the bulk slot is still held")
	}
}
