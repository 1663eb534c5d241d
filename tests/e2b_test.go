package tests

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/testenv"
)

// requireE2BClient stops the test unless node, the installed E2B SDK and
// the Python data stack the script's cells use are at hand; it returns
// node's path and the script's.
func requireE2BClient(t *testing.T) (node, script string) {
	t.Helper()
	requireDaemon(t)
	node, dir := requireNPMClient(t, "e2b", "@e2b/code-interpreter")
	for _, lib := range []string{"matplotlib", "pandas"} {
		if _, err := os.Stat("/usr/lib/python3/dist-packages/" + lib); err != nil {
			testenv.MissingFile(t, "/usr/lib/python3/dist-packages/"+lib)
		}
	}
	return node, filepath.Join(dir, "interop.mjs")
}

// e2bDaemon starts a daemon with two tokens, the two E2B API keys of the
// script, and returns it and the keys.
func e2bDaemon(t *testing.T, extra ...string) (*daemon, string, string) {
	t.Helper()
	keyA, keyB := "e2b-key-a-"+rand.Text(), "e2b-key-b-"+rand.Text()
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte(keyA+"\n"+keyB+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, daemonConfig{args: append([]string{"--token-file", tokens}, extra...)})
	return d, keyA, keyB
}

// runE2BScript runs the interop script with env and fails the test on a
// failed check, showing its output.
func runE2BScript(t *testing.T, node, script string, env []string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, append([]string{script}, args...)...)
	cmd.Dir = filepath.Dir(script)
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 2 * time.Second
	out, err := cmd.CombinedOutput()
	t.Logf("node %s:\n%s", filepath.Base(script), out)
	if ctx.Err() != nil {
		t.Fatal("the E2B SDK script did not finish within 4 minutes")
	}
	if err != nil {
		t.Fatalf("the E2B SDK script failed: %v", err)
	}
	return string(out)
}

// TestE2BSDK drives /e2b with the real @e2b/code-interpreter SDK,
// unchanged, configured only by E2B's environment variables
// (tests/e2b/interop.mjs): create, live stdout, a trailing expression, a
// matplotlib PNG that decodes, a DataFrame's HTML, an exception, state
// between calls, a JavaScript context, files both ways and a missing one,
// files.list, commands.run with exit codes and a timeout, isRunning,
// kill true then false, a bad API key, and another key seeing nothing of
// the sandbox. Afterwards the daemon holds no session: kill closed them.
func TestE2BSDK(t *testing.T) {
	node, script := requireE2BClient(t)
	d, keyA, keyB := e2bDaemon(t)
	base := d.url + "/e2b"
	out := runE2BScript(t, node, script, []string{"E2B_API_URL=" + base, "E2B_SANDBOX_URL=" + base, "E2B_API_KEY=" + keyA}, keyB)
	if n := checksPassed(out); n != 18 {
		t.Errorf("%d checks passed; want 18", n)
	}
	for _, key := range []string{keyA, keyB} {
		resp, body := d.request(t, "GET", "/v1/sessions", nil, http.Header{"Authorization": {"Bearer " + key}})
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"sessions":[]`) {
			t.Errorf("GET /v1/sessions after kill: %d %s; want no session left", resp.StatusCode, body)
		}
	}
}

// checksPassed counts the script's "ok" lines.
func checksPassed(out string) int {
	n := 0
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "ok ") {
			n++
		}
	}
	return n
}

// TestE2BAccessTokens: a sandbox's calls need the access token its
// create returned (another sandbox's, or none, is a 401), a key acts on
// its own sandboxes only, and a killed sandbox answers E2B's 502.
func TestE2BAccessTokens(t *testing.T) {
	requireDaemon(t)
	d, keyA, keyB := e2bDaemon(t)
	create := func(key string) (id, token string) {
		resp, body := d.request(t, "POST", "/e2b/v2/sandboxes", []byte(`{"templateID":"code-interpreter-v1","timeout":60}`), http.Header{"X-API-KEY": {key}})
		var sb struct{ SandboxID, EnvdAccessToken, TrafficAccessToken string }
		if err := json.Unmarshal(body, &sb); err != nil || resp.StatusCode != http.StatusCreated || sb.EnvdAccessToken == "" || sb.TrafficAccessToken != sb.EnvdAccessToken {
			t.Fatalf("create: %d %s", resp.StatusCode, body)
		}
		return sb.SandboxID, sb.EnvdAccessToken
	}
	idA, tokA := create(keyA)
	_, tokB := create(keyB)
	health := func(id, token string) int {
		hdr := http.Header{"E2b-Sandbox-Id": {id}, "E2b-Sandbox-Port": {"49983"}}
		if token != "" {
			hdr.Set("X-Access-Token", token)
		}
		resp, _ := d.request(t, "GET", "/e2b/health", nil, hdr)
		return resp.StatusCode
	}
	for _, tc := range []struct {
		name, token string
		want        int
	}{
		{"its own token", tokA, http.StatusNoContent},
		{"no token", "", http.StatusUnauthorized},
		{"another sandbox's token", tokB, http.StatusUnauthorized},
		{"the API key", keyA, http.StatusUnauthorized},
	} {
		if got := health(idA, tc.token); got != tc.want {
			t.Errorf("health with %s: %d, want %d", tc.name, got, tc.want)
		}
	}
	// The code interpreter's calls carry the token as
	// E2B-Traffic-Access-Token.
	resp, body := d.request(t, "POST", "/e2b/execute", []byte(`{"code":"6*7"}`), http.Header{
		"E2b-Sandbox-Id": {idA}, "E2b-Sandbox-Port": {"49999"}, "E2B-Traffic-Access-Token": {tokA}})
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"text":"42"`) || !strings.Contains(string(body), `"type":"end_of_execution"`) {
		t.Errorf("execute: %d %s", resp.StatusCode, body)
	}
	if _, m := d.request(t, "GET", "/metrics", nil, http.Header{"Authorization": {"Bearer " + keyA}}); !strings.Contains(string(m), `sandboxd_session_cells_total{status="ok"} 1`) {
		t.Errorf("the E2B cell is not counted in /metrics")
	}
	kill := func(key string) (int, string) {
		resp, body := d.request(t, "DELETE", "/e2b/sandboxes/"+idA, nil, http.Header{"X-API-KEY": {key}})
		return resp.StatusCode, string(body)
	}
	if code, body := kill(keyB); code != http.StatusNotFound || !strings.Contains(body, `"code":404`) {
		t.Errorf("kill by another key: %d %s; want E2B's 404", code, body)
	}
	if code, _ := kill(keyA); code != http.StatusNoContent {
		t.Errorf("kill: %d, want 204", code)
	}
	if code, body := kill(keyA); code != http.StatusNotFound || !strings.Contains(body, `"code":404`) {
		t.Errorf("second kill: %d %s; want E2B's 404", code, body)
	}
	if got := health(idA, tokA); got != http.StatusBadGateway {
		t.Errorf("health of a killed sandbox: %d, want 502", got)
	}

	// A timeout kills the sandbox when it passes, used or not; one out of
	// bounds is a 400 naming them.
	idC, tokC := create(keyA)
	setTimeout := func(body string) (int, string) {
		resp, b := d.request(t, "POST", "/e2b/sandboxes/"+idC+"/timeout", []byte(body), http.Header{"X-API-KEY": {keyA}})
		return resp.StatusCode, string(b)
	}
	if code, body := setTimeout(`{"timeout":0}`); code != http.StatusBadRequest || !strings.Contains(body, "between 1 s and") {
		t.Errorf("timeout 0: %d %s; want 400 naming the bounds", code, body)
	}
	if code, body := setTimeout(`{"timeout":1}`); code != http.StatusNoContent {
		t.Fatalf("timeout 1: %d %s", code, body)
	}
	deadline := time.Now().Add(30 * time.Second)
	for health(idC, tokC) != http.StatusBadGateway {
		if time.Now().After(deadline) {
			t.Fatal("the sandbox still runs 30 s after its 1 s timeout")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// e2bTestDomain is the made-up domain of the host-name routing test.
const e2bTestDomain = "e2b.test"

// TestE2BSDKHostRouting runs the same suite as TestE2BSDK through
// host-name routing (--e2b-domain), as SDKs before 2.7.0 need: without
// E2B_SANDBOX_URL the SDK sends sandbox calls to
// https://<port>-<id>.e2b.test. The test stands in for wildcard DNS and
// TLS: the SDK's proxy option, and for node's global fetch (which the
// code interpreter's calls use) a dispatcher preloaded by
// tests/e2b/hostproxy.mjs, send every connection through a CONNECT proxy
// here, which takes *.e2b.test:443 to a TLS front (a certificate
// for *.e2b.test, trusted through NODE_EXTRA_CA_CERTS) that passes the
// requests, Host kept, to the daemon.
func TestE2BSDKHostRouting(t *testing.T) {
	node, script := requireE2BClient(t)
	d, keyA, keyB := e2bDaemon(t, "--e2b-domain", e2bTestDomain)
	daemonURL, err := url.Parse(d.url)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, cert := wildcardCert(t, "*."+e2bTestDomain)
	front := httptest.NewUnstartedServer(&httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(daemonURL)
		r.Out.Host = r.In.Host
	}})
	front.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	// One request per connection: a keep-alive connection that the test's
	// front closes as the SDK sends its next request on it (after a
	// stream ended) is lost with that request ("terminated" from undici,
	// which retries no POST). A real front has the same race and its own
	// answer to it; this test is about the routing.
	front.Config.SetKeepAlivesEnabled(false)
	front.StartTLS()
	t.Cleanup(front.Close)
	proxy := httptest.NewServer(connectProxy(t, map[string]string{
		"*." + e2bTestDomain + ":443": front.Listener.Addr().String(),
		daemonURL.Host:                daemonURL.Host,
	}))
	t.Cleanup(proxy.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	out := runE2BScript(t, node, script, []string{
		"E2B_API_URL=" + d.url + "/e2b", "E2B_DOMAIN=" + e2bTestDomain, "E2B_SANDBOX_URL=", "E2B_API_KEY=" + keyA,
		"INTEROP_PROXY=" + proxy.URL, "NODE_EXTRA_CA_CERTS=" + caFile, "NODE_OPTIONS=--import=./hostproxy.mjs",
	}, keyB)
	if n := checksPassed(out); n != 18 {
		t.Errorf("%d checks passed; want 18", n)
	}
	if !strings.Contains(d.log.String(), "e2b sandbox created") {
		t.Error("the daemon logged no E2B sandbox")
	}
}

// wildcardCert is a self-signed certificate for name, and its PEM.
func wildcardCert(t *testing.T, name string) ([]byte, tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// connectProxy is an HTTP CONNECT proxy that reaches only the targets of
// routes ("host:port", or "*.domain:port" for any name under domain) and
// refuses the rest: the test's network stays on loopback.
func connectProxy(t *testing.T, routes map[string]string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
			return
		}
		target := routes[r.Host]
		if host, port, err := net.SplitHostPort(r.Host); err == nil && target == "" {
			if _, domain, ok := strings.Cut(host, "."); ok {
				target = routes["*."+domain+":"+port]
			}
		}
		if target == "" {
			http.Error(w, "no route to "+r.Host, http.StatusForbidden)
			return
		}
		up, err := net.DialTimeout("tcp", target, 5*time.Second)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer up.Close()
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer conn.Close()
		if _, err := conn.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil {
			return
		}
		done := make(chan struct{})
		go func() {
			_, _ = io.Copy(up, buf)
			if c, ok := up.(*net.TCPConn); ok {
				_ = c.CloseWrite()
			}
			close(done)
		}()
		_, _ = io.Copy(conn, up)
		<-done
	})
}
