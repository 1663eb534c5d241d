package tests

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"net/http"
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
	node, err := exec.LookPath("node")
	if err != nil {
		testenv.MissingNPMClient(t, "tests/e2b", "no node on PATH")
	}
	dir, err := filepath.Abs("e2b")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@e2b", "code-interpreter", "package.json")); err != nil {
		testenv.MissingNPMClient(t, "tests/e2b", "tests/e2b/node_modules/@e2b/code-interpreter is missing")
	}
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
}
