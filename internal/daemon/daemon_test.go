package daemon

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/api"
	"github.com/sandboxd/sandboxd/internal/isolate/nsinit"
	"github.com/sandboxd/sandboxd/internal/testenv"
)

func TestMain(m *testing.M) {
	nsinit.MaybeRun()
	os.Exit(m.Run())
}

func TestCheckListen(t *testing.T) {
	cases := []struct {
		listen, token string
		insecure      bool
		ok            bool
	}{
		{"127.0.0.1:8080", "", false, true},
		{"[::1]:8080", "", false, true},
		{"localhost:8080", "", false, true},
		{"0.0.0.0:8080", "", false, false},
		{":8080", "", false, false},
		{"10.1.2.3:8080", "", false, false},
		{"0.0.0.0:8080", "tok", false, true},
		{"0.0.0.0:8080", "", true, true},
	}
	for _, c := range cases {
		err := checkListen(Config{Listen: c.listen, API: api.Config{Tokens: tokens(c.token)}, AllowRemoteWithoutToken: c.insecure})
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrInsecure)) {
			t.Errorf("checkListen(%q, token %q, insecure %v) = %v", c.listen, c.token, c.insecure, err)
		}
	}
}

// TestServeRequiresToken: a token given to the daemon is enforced on the
// API and on /mcp (it once was not passed on, and nothing was).
func TestServeRequiresToken(t *testing.T) {
	base, stop := serve(t, Config{Listen: "127.0.0.1:0", API: api.Config{Tokens: []string{"s3cret"}}})
	get := func(path, token string) int {
		req, _ := http.NewRequest("GET", base+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, p := range []string{"/v1/runtimes", "/metrics", "/mcp"} {
		if got := get(p, ""); got != http.StatusUnauthorized {
			t.Errorf("%s without the token: %d", p, got)
		}
		if got := get(p, "wrong"); got != http.StatusUnauthorized {
			t.Errorf("%s with a wrong token: %d", p, got)
		}
	}
	if got := get("/v1/runtimes", "s3cret"); got != http.StatusOK {
		t.Errorf("with the token: %d", got)
	}
	if got := get("/healthz", ""); got != http.StatusOK {
		t.Errorf("/healthz: %d", got)
	}
	stop()
}

// serve starts the daemon (root only) and returns its URL and a stop that
// checks it shut down cleanly.
func serve(t *testing.T, cfg Config) (base string, stop func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("requires root for the process backend")
	}
	ctx, cancel := context.WithCancel(t.Context())
	addrc := make(chan net.Addr, 1)
	done := make(chan error, 1)
	cfg.Ready = func(a net.Addr) { addrc <- a }
	go func() { done <- Serve(ctx, cfg) }()
	select {
	case a := <-addrc:
		base = "http://" + a.String()
	case err := <-done:
		cancel()
		testenv.MissingSandbox(t, err)
	}
	return base, func() {
		t.Helper()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve after shutdown: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("Serve did not return after its context ended")
		}
	}
}

// TestServeTokenlessHost: a token-less daemon on the loopback serves the
// address it bound and loopback names, and refuses another Host (DNS
// rebinding), on the API and on /mcp.
func TestServeTokenlessHost(t *testing.T) {
	base, stop := serve(t, Config{Listen: "127.0.0.1:0"})
	defer stop()
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(base, "http://"))
	for _, c := range []struct {
		path, host string
		want       int
	}{
		{"/v1/runtimes", "", http.StatusOK},
		{"/v1/runtimes", "localhost:" + port, http.StatusOK},
		{"/v1/runtimes", "evil.example:" + port, http.StatusForbidden},
		{"/v1/sessions", "evil.example", http.StatusForbidden},
		{"/mcp", "evil.example:" + port, http.StatusForbidden},
	} {
		req, _ := http.NewRequest("GET", base+c.path, nil)
		if c.host != "" {
			req.Host = c.host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("GET %s Host %q: %d, want %d", c.path, c.host, resp.StatusCode, c.want)
		}
	}
}

func TestLoopbackListen(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8080": true, "127.3.2.1:1": true, "[::1]:0": true, "localhost:8080": true,
		"0.0.0.0:8080": false, ":8080": false, "10.1.2.3:8080": false, "sandbox.example:80": false, "127.0.0.1": false,
	} {
		if got := loopbackListen(addr); got != want {
			t.Errorf("loopbackListen(%q) = %v, want %v", addr, got, want)
		}
	}
}

func tokens(t string) []string {
	if t == "" {
		return nil
	}
	return []string{t}
}

// TestShutdownClosesFreshConns: a connection that has sent no request
// (a client's spare one) does not hold the daemon's exit: Go's
// Server.Shutdown counts it idle only after 5 s, the daemon closes it.
func TestShutdownClosesFreshConns(t *testing.T) {
	base, stop := serve(t, Config{Listen: "127.0.0.1:0"})
	fresh, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	// The server has taken it (StateNew) once a request on another
	// connection is answered after it was dialed.
	resp, err := http.Get(base + "/v1/runtimes")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	start := time.Now()
	stop()
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("the daemon took %s to stop with a connection open that sent nothing; Go alone waits 5 s for it", took.Round(time.Millisecond))
	}
	_ = fresh.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := fresh.Read(make([]byte, 1)); n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("the fresh connection after shutdown: read %d, %v; want it closed", n, err)
	}
}
