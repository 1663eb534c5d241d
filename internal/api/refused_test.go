package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// slowedCount is the server's sandboxd_requests_slowed_total, read with
// the token "m" (a client of its own).
func slowedCount(t *testing.T, s *Server) int {
	t.Helper()
	rec := do(t, s, "GET", "/metrics", "", "Authorization", "Bearer m")
	m := regexp.MustCompile(`(?m)^sandboxd_requests_slowed_total (\d+)$`).FindStringSubmatch(rec.Body.String())
	if m == nil {
		t.Fatalf("no sandboxd_requests_slowed_total in /metrics:\n%s", rec.Body.String())
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// TestRefusedClientWaits: a client refused past the burst waits its turn
// before its next request is read, and that request is then served; a
// client with another token, a probe from the same address, and answers
// that are not refusals (404) are not held back.
func TestRefusedClientWaits(t *testing.T) {
	// 3 refusals at once, then one each 100ms.
	s := New(newFake(), Config{Tokens: []string{"a", "b", "m"}, RefusalRate: 10, RefusalBurst: 3})
	asA := []string{"Authorization", "Bearer a", "Content-Type", "application/json"}
	asB := []string{"Authorization", "Bearer b", "Content-Type", "application/json"}
	// Its turn comes 100ms after the burst began, however long the
	// requests in between took on a loaded machine.
	start := time.Now()
	for i := range 3 {
		if rec := do(t, s, "POST", "/v1/runs", "{", asA...); rec.Code != 400 {
			t.Fatalf("malformed JSON %d: %d %s", i, rec.Code, rec.Body)
		}
	}
	if n := slowedCount(t, s); n != 0 {
		t.Fatalf("within the burst: %d requests slowed", n)
	}
	rec := do(t, s, "POST", "/v1/runs", `{"runtime":"python","code":"print(1)"}`, asA...)
	if waited := time.Since(start); rec.Code != 200 || waited < 95*time.Millisecond {
		t.Errorf("A's request past the burst: %d at %s from the burst's start, want 200 at its turn (100ms)", rec.Code, waited)
	}
	if n := slowedCount(t, s); n != 1 {
		t.Errorf("%d requests slowed, want A's one", n)
	}
	// B is another tenant (A is now in debt again); a probe never waits;
	// a 404 is not a refusal.
	for range 3 {
		s.refusals.Charge(Owner(requestWith("Authorization", "Bearer a")))
	}
	if rec := do(t, s, "POST", "/v1/runs", `{"runtime":"python","code":"print(1)"}`, asB...); rec.Code != 200 {
		t.Errorf("B: %d %s", rec.Code, rec.Body)
	}
	if rec := do(t, s, "GET", "/healthz", ""); rec.Code != 200 {
		t.Errorf("probe: %d", rec.Code)
	}
	if n := slowedCount(t, s); n != 1 {
		t.Errorf("B's request or the probe was slowed: %d requests slowed in all", n)
	}
	for range 10 {
		if rec := do(t, s, "GET", "/v1/no-such-endpoint", "", asB...); rec.Code != 404 {
			t.Fatalf("unknown endpoint: %d", rec.Code)
		}
	}
	if rec := do(t, s, "GET", "/v1/runtimes", "", asB...); rec.Code != 200 {
		t.Errorf("B after ten 404s: %d", rec.Code)
	}
	if n := slowedCount(t, s); n != 1 {
		t.Errorf("404s were charged: %d requests slowed in all", n)
	}
}

// requestWith is a request carrying the header k: v.
func requestWith(k, v string) *http.Request {
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set(k, v)
	return r
}

// TestRefusedWrongTokens: requests without a valid token are counted by
// their address, so a client cannot shed its debt by sending another
// made-up token each time; a valid token from that address is its own
// client.
func TestRefusedWrongTokens(t *testing.T) {
	s := New(newFake(), Config{Tokens: []string{"a", "m"}, RefusalRate: 10, RefusalBurst: 3})
	for i := range 3 {
		if rec := do(t, s, "GET", "/v1/runtimes", "", "Authorization", "Bearer guess"+strconv.Itoa(i)); rec.Code != 401 {
			t.Fatalf("guess %d: %d", i, rec.Code)
		}
	}
	start := time.Now()
	if rec := do(t, s, "GET", "/v1/runtimes", "", "Authorization", "Bearer another-guess"); rec.Code != 401 || time.Since(start) < 80*time.Millisecond {
		t.Errorf("a fourth guess with a new token: %d after %s, want 401 after its turn", rec.Code, time.Since(start))
	}
	if n := slowedCount(t, s); n != 1 {
		t.Errorf("%d requests slowed, want the fourth guess", n)
	}
}

// TestRefusedPastMaxWait: a request whose turn is further off than the
// longest wait is answered 429 after that wait, unread; one whose client
// goes away while it waits is dropped.
func TestRefusedPastMaxWait(t *testing.T) {
	s := New(newFake(), Config{Tokens: []string{"a", "m"}, RefusalRate: 10, RefusalBurst: 3})
	s.maxWait = 50 * time.Millisecond
	a := Owner(requestWith("Authorization", "Bearer a"))
	for range 3 + 10 { // a second in debt
		s.refusals.Charge(a)
	}
	start := time.Now()
	rec := do(t, s, "POST", "/v1/runs", `{"runtime":"python","code":"print(1)"}`, "Authorization", "Bearer a", "Content-Type", "application/json")
	if waited := time.Since(start); rec.Code != 429 || waited < 40*time.Millisecond || rec.Header().Get("Retry-After") == "" {
		t.Errorf("past the longest wait: %d (Retry-After %q) after %s, want 429 after 50ms", rec.Code, rec.Header().Get("Retry-After"), waited)
	}
	if code := errCode(t, rec); code != "too_many_requests" || !strings.Contains(rec.Body.String(), "--refusal-rate") {
		t.Errorf("the 429 does not say why: %s", rec.Body)
	}
	if !strings.Contains(do(t, s, "GET", "/metrics", "", "Authorization", "Bearer m").Body.String(), `sandboxd_requests_rejected_total{reason="refused_too_often"} 1`) {
		t.Error("the 429 is not counted as refused_too_often")
	}

	ctx, cancel := context.WithCancel(context.Background())
	req := httptest.NewRequest("GET", "/v1/runtimes", nil).WithContext(ctx)
	req.Header.Set("Authorization", "Bearer a")
	rec = httptest.NewRecorder()
	done := make(chan struct{})
	go func() { s.ServeHTTP(rec, req); close(done) }()
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("a request whose client went away still waits")
	}
	if rec.Body.Len() != 0 {
		t.Errorf("a request whose client went away was answered: %d %s", rec.Code, rec.Body)
	}
}

// TestRefusalsOff: a negative rate never holds a request back.
func TestRefusalsOff(t *testing.T) {
	s := New(newFake(), Config{RefusalRate: -1, RefusalBurst: 1})
	for range 5 {
		if rec := do(t, s, "POST", "/v1/runs", "{", "Content-Type", "application/json"); rec.Code != 400 {
			t.Fatalf("malformed JSON: %d", rec.Code)
		}
	}
	if s.refusals != nil {
		t.Fatal("refusals counted with a negative rate")
	}
}
