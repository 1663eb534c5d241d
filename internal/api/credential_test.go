package api

import (
	"net/http/httptest"
	"testing"
)

// TestCredential: Jupyter's "token" scheme and Bearer both carry the
// token, and so does ?token= but only on a WebSocket handshake; the owner
// of a request is its token's whichever way it came.
func TestCredential(t *testing.T) {
	for _, tc := range []struct {
		name, target, auth, upgrade string
		token                       string
		ok                          bool
	}{
		{"bearer", "/v1/sessions", "Bearer abc", "", "abc", true},
		{"jupyter's scheme", "/api/kernels", "token abc", "", "abc", true},
		{"any case", "/api/kernels", "TOKEN abc", "", "abc", true},
		{"another scheme", "/api/kernels", "Basic abc", "", "", false},
		{"an empty token", "/api/kernels", "token ", "", "", false},
		{"query on a WebSocket", "/api/kernels/x/channels?token=abc", "", "websocket", "abc", true},
		{"query elsewhere", "/api/kernels?token=abc", "", "", "", false},
		{"the header wins", "/api/kernels/x/channels?token=abc", "token def", "websocket", "def", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", tc.target, nil)
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			if tc.upgrade != "" {
				r.Header.Set("Upgrade", tc.upgrade)
			}
			token, ok := Credential(r)
			if token != tc.token || ok != tc.ok {
				t.Fatalf("Credential = %q, %v; want %q, %v", token, ok, tc.token, tc.ok)
			}
			bearer := httptest.NewRequest("GET", "/", nil)
			bearer.Header.Set("Authorization", "Bearer "+tc.token)
			if Owner(r) != Owner(bearer) {
				t.Fatalf("Owner = %q, want the owner of Bearer %q (%q)", Owner(r), tc.token, Owner(bearer))
			}
		})
	}
}
