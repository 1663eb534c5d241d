package api

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestBrowserRequests: what only a web page sends is refused before
// routing (a foreign Host without a token, a cross-origin Origin or
// Sec-Fetch-Site, a text/plain or multipart POST to /v1), and what curl,
// Go, node and Piston's npm client send passes.
func TestBrowserRequests(t *testing.T) {
	const (
		run    = `{"runtime":"python","code":"1"}`
		piston = `{"language":"python","version":"*","files":[{"content":"1"}]}`
	)
	open := Config{Sessions: newManager(t)}
	withToken := Config{Sessions: newManager(t), Tokens: []string{"s3cret"}}
	anyHost := Config{Sessions: newManager(t), AllowAnyHost: true}
	bound := Config{Sessions: newManager(t), Addr: "192.0.2.1:8080"}
	bearer := []string{"Authorization", "Bearer s3cret"}
	for _, tc := range []struct {
		name               string
		cfg                Config
		method, path, body string
		hdr                []string
		// status is the refusal's (403, 415); 0: passed the checks (the
		// handler's own answer, whatever it is).
		status int
		code   string
		says   string
	}{
		// DNS rebinding: a token-less daemon serves loopback Hosts only.
		{"forged host", open, "GET", "/v1/runtimes", "", []string{"Host", "evil.example"}, 403, "forbidden", `Host "evil.example" is not a loopback name`},
		{"forged host with port", open, "POST", "/v1/runs", run, []string{"Host", "evil.example:8080"}, 403, "forbidden", "DNS rebinding"},
		{"forged host, sessions", open, "GET", "/v1/sessions", "", []string{"Host", "evil.example:8080"}, 403, "forbidden", "--token-file"},
		{"forged host, healthz", open, "GET", "/healthz", "", []string{"Host", "evil.example"}, 403, "forbidden", "loopback"},
		{"loopback-looking name", open, "GET", "/v1/runtimes", "", []string{"Host", "127.0.0.1.evil.example"}, 403, "forbidden", "loopback"},
		{"localhost subdomain of evil", open, "GET", "/v1/runtimes", "", []string{"Host", "localhost.evil.example:8080"}, 403, "forbidden", "loopback"},
		{"private address", open, "GET", "/v1/runtimes", "", []string{"Host", "10.0.0.1:8080"}, 403, "forbidden", "loopback"},
		{"any address", open, "GET", "/v1/runtimes", "", []string{"Host", "0.0.0.0:8080"}, 403, "forbidden", "loopback"},
		{"bare ipv6", open, "GET", "/v1/runtimes", "", []string{"Host", "::1"}, 403, "forbidden", "loopback"},
		{"no host", open, "GET", "/v1/runtimes", "", []string{"Host", ""}, 403, "forbidden", "loopback"},
		{"localhost", open, "GET", "/v1/runtimes", "", []string{"Host", "localhost"}, 0, "", ""},
		{"localhost:port", open, "GET", "/v1/runtimes", "", []string{"Host", "LocalHost:8080"}, 0, "", ""},
		{"127.0.0.1", open, "GET", "/v1/runtimes", "", []string{"Host", "127.0.0.1"}, 0, "", ""},
		{"127.0.0.1:port", open, "POST", "/v1/runs", run, []string{"Host", "127.0.0.1:41234"}, 0, "", ""},
		{"127.x.y.z:port", open, "GET", "/v1/runtimes", "", []string{"Host", "127.1.2.3:8080"}, 0, "", ""},
		{"[::1]", open, "GET", "/v1/runtimes", "", []string{"Host", "[::1]"}, 0, "", ""},
		{"[::1]:port", open, "GET", "/v1/sessions", "", []string{"Host", "[::1]:8080"}, 0, "", ""},
		{"the bound address", bound, "GET", "/v1/runtimes", "", []string{"Host", "192.0.2.1:8080"}, 0, "", ""},
		{"not the bound address", bound, "GET", "/v1/runtimes", "", []string{"Host", "192.0.2.1:8081"}, 403, "forbidden", "loopback"},
		{"any host with a token", withToken, "POST", "/v1/runs", run, append([]string{"Host", "sandboxd.example:8080"}, bearer...), 0, "", ""},
		{"any host when the operator chose", anyHost, "POST", "/v1/runs", run, []string{"Host", "sandboxd.example"}, 0, "", ""},

		// Cross-origin requests, on every route, token or not.
		{"cross-origin Origin", open, "POST", "/v1/runs", run, []string{"Origin", "http://evil.example"}, 403, "forbidden", `Origin "http://evil.example"`},
		{"cross-origin Origin with a token", withToken, "POST", "/v1/runs", run, append([]string{"Origin", "https://evil.example"}, bearer...), 403, "forbidden", "Origin"},
		{"other port of localhost", open, "POST", "/v1/sessions", `{}`, []string{"Origin", "http://localhost:3000"}, 403, "forbidden", "Origin"},
		{"opaque origin", open, "GET", "/v1/sessions", "", []string{"Origin", "null"}, 403, "forbidden", "Origin"},
		{"cross-origin Origin, file put", open, "PUT", "/v1/sessions/here-x/files/a.txt", "x", []string{"Origin", "http://evil.example"}, 403, "forbidden", "Origin"},
		{"cross-origin Origin, interrupt", open, "POST", "/v1/sessions/here-x/interrupt", "", []string{"Origin", "http://evil.example"}, 403, "forbidden", "Origin"},
		{"cross-origin Origin, piston", open, "POST", "/api/v2/execute", piston, []string{"Origin", "http://evil.example", "Content-Type", "text/plain;charset=UTF-8"}, 403, "forbidden", "Origin"},
		{"same-origin Origin", open, "POST", "/v1/runs", run, []string{"Origin", "http://localhost:8080"}, 0, "", ""},
		{"same-origin Origin, other case", open, "POST", "/v1/runs", run, []string{"Origin", "http://LOCALHOST:8080"}, 0, "", ""},
		{"Sec-Fetch-Site cross-site", open, "POST", "/v1/runs", run, []string{"Sec-Fetch-Site", "cross-site"}, 403, "forbidden", `Sec-Fetch-Site "cross-site"`},
		{"Sec-Fetch-Site same-site", open, "GET", "/v1/sessions", "", []string{"Sec-Fetch-Site", "same-site"}, 403, "forbidden", "Sec-Fetch-Site"},
		{"Sec-Fetch-Site cross-site with a token", withToken, "GET", "/v1/runtimes", "", append([]string{"Sec-Fetch-Site", "cross-site"}, bearer...), 403, "forbidden", "Sec-Fetch-Site"},
		{"Sec-Fetch-Site same-origin", open, "POST", "/v1/runs", run, []string{"Sec-Fetch-Site", "same-origin"}, 0, "", ""},
		{"Sec-Fetch-Site none", open, "GET", "/v1/runtimes", "", []string{"Sec-Fetch-Site", "none"}, 0, "", ""},

		// JSON POSTs under /v1 refuse a web form's body types.
		{"text/plain run", open, "POST", "/v1/runs", run, []string{"Content-Type", "text/plain"}, 415, "unsupported_media_type", `Content-Type "text/plain"`},
		{"text/plain;charset run", open, "POST", "/v1/runs?stream=1", run, []string{"Content-Type", "Text/Plain; charset=UTF-8"}, 415, "unsupported_media_type", "application/json"},
		{"text/plain session", open, "POST", "/v1/sessions", `{}`, []string{"Content-Type", "text/plain"}, 415, "unsupported_media_type", "/v1/sessions"},
		{"text/plain exec", open, "POST", "/v1/sessions/here-x/exec", `{"code":"1"}`, []string{"Content-Type", "text/plain"}, 415, "unsupported_media_type", "JSON"},
		{"text/plain interrupt", open, "POST", "/v1/sessions/here-x/interrupt", "", []string{"Content-Type", "text/plain"}, 415, "unsupported_media_type", "JSON"},
		{"multipart run", open, "POST", "/v1/runs", run, []string{"Content-Type", "multipart/form-data; boundary=x"}, 415, "unsupported_media_type", "multipart"},
		{"text/plain with a token", withToken, "POST", "/v1/runs", run, append([]string{"Content-Type", "text/plain"}, bearer...), 415, "unsupported_media_type", "JSON"},
		{"json run", open, "POST", "/v1/runs", run, []string{"Content-Type", "application/json"}, 0, "", ""},
		{"json;charset run", open, "POST", "/v1/runs", run, []string{"Content-Type", "application/json; charset=utf-8"}, 0, "", ""},
		{"no content type run", open, "POST", "/v1/runs", run, nil, 0, "", ""},
		{"curl -d run", open, "POST", "/v1/runs", run, []string{"Content-Type", "application/x-www-form-urlencoded"}, 0, "", ""},
		{"curl -d session", open, "POST", "/v1/sessions", `{}`, []string{"Content-Type", "application/x-www-form-urlencoded"}, 0, "", ""},
		{"json session", open, "POST", "/v1/sessions", `{}`, []string{"Content-Type", "application/json"}, 0, "", ""},
		{"raw file put", open, "PUT", "/v1/sessions/here-x/files/a.txt", "x", []string{"Content-Type", "text/plain"}, 0, "", ""},
		{"piston client's text/plain", open, "POST", "/api/v2/execute", piston, []string{"Content-Type", "text/plain;charset=UTF-8"}, 0, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := do(t, newServer(newFake(), tc.cfg), tc.method, tc.path, tc.body, tc.hdr...)
			if tc.status == 0 {
				if rec.Code == 403 || rec.Code == 415 {
					t.Fatalf("refused: %d %s", rec.Code, rec.Body.String())
				}
				if strings.HasPrefix(tc.path, "/v1/runs") || tc.path == "/v1/runtimes" || tc.path == "/api/v2/execute" {
					if rec.Code != 200 {
						t.Fatalf("%d %s, want 200", rec.Code, rec.Body.String())
					}
				}
				return
			}
			var eb ErrorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil {
				t.Fatalf("%d %q: the error is not JSON", rec.Code, rec.Body.String())
			}
			if rec.Code != tc.status || eb.Error.Code != tc.code || !strings.Contains(eb.Error.Message, tc.says) {
				t.Fatalf("%d %s, want %d %s saying %q", rec.Code, rec.Body.String(), tc.status, tc.code, tc.says)
			}
		})
	}
}

func TestLoopbackHost(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost": true, "localhost:1": true, "LOCALHOST": true, "127.0.0.1": true, "127.255.0.9:80": true,
		"[::1]": true, "[::1]:8080": true, "[0:0:0:0:0:0:0:1]:8080": true,
		"": false, "::1": false, "[::1": false, "localhost.": false, "localhost:": true, "127.1": false,
		"0x7f000001": false, "evil.example": false, "127.0.0.1.evil.example": false, "[::2]:80": false,
		"10.0.0.1": false, "localhost.evil.example:80": false, "[fe80::1%lo]:80": false,
	} {
		if got := loopbackHost(host); got != want {
			t.Errorf("loopbackHost(%q) = %v, want %v", host, got, want)
		}
	}
}
