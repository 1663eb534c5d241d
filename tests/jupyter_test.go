package tests

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/testenv"
)

// The Jupyter interoperability tests drive `sandboxd serve`'s kernel
// gateway API with Jupyter's own clients. tests/jupyter/kernel.mjs is the
// real @jupyterlab/services npm client (JupyterLab's), pinned by its
// lockfile; `npm ci --prefix tests/jupyter` installs it (scripts/test does).
//
// Like the API tests, none runs in parallel with another test: a live
// session of one would read as a leak to another test's check.

// requireJupyterClient stops the test unless node and the installed
// @jupyterlab/services are at hand, and returns node's path and the
// script's.
func requireJupyterClient(t *testing.T) (node, script string) {
	t.Helper()
	return requireNPMClient(t, "jupyter", "@jupyterlab/services", "kernel.mjs")
}

// TestJupyterServicesClient: JupyterLab's client starts a kernel on the
// daemon and runs cells in it over the channels WebSocket (the binary v1
// subprotocol it offers first): message order and parent ids, counts 1
// then 2, a traceback, an interrupt of time.sleep(60) within 5 s, a
// restart that clears the state, a shutdown then 404; a second token sees
// none of the first's kernels and cannot shut them down.
func TestJupyterServicesClient(t *testing.T) {
	node, script := requireJupyterClient(t)
	requireDaemon(t)
	token, other := "jupyter-"+randomHex(16), "other-"+randomHex(16)
	d := startDaemon(t, daemonConfig{token: token + "\n" + other})
	runNodeClient(t, node, script, d.url, token, other)
	// The kernel's session went with its shutdown.
	_, body := d.request(t, "GET", "/v1/sessions", nil, http.Header{"Authorization": {"Bearer " + token}})
	if string(body) != "{\"sessions\":[]}\n" {
		t.Errorf("sessions left after the kernel's shutdown: %s", body)
	}
}

// notebookServer is Debian's `jupyter notebook` with its kernels on the
// daemon at gatewayURL (--gateway-url), reached with gatewayToken.
type notebookServer struct {
	url, token string
	dir        string // the notebooks' directory
}

// startNotebook starts Debian's notebook server against the daemon. Its
// configuration, data and runtime files go to a temporary home, so nothing
// of the host's Jupyter setup is in the path. Cleanup stops it.
func startNotebook(t *testing.T, gatewayURL, gatewayToken string) *notebookServer {
	t.Helper()
	if _, err := os.Stat("/usr/bin/jupyter-notebook"); err != nil {
		testenv.MissingFile(t, "/usr/bin/jupyter-notebook")
	}
	home := t.TempDir()
	nb := &notebookServer{token: "nb-" + randomHex(16), dir: home}
	port := freePort(t)
	nb.url = fmt.Sprintf("http://127.0.0.1:%d", port)
	cmd := exec.Command("/usr/bin/jupyter-notebook", "--no-browser", "--allow-root", "--ip=127.0.0.1", fmt.Sprintf("--port=%d", port),
		"--NotebookApp.token="+nb.token, "--notebook-dir="+home,
		"--gateway-url="+gatewayURL, "--GatewayClient.auth_token="+gatewayToken)
	cmd.Env = append(daemonEnv(), "HOME="+home, "JUPYTER_CONFIG_DIR="+filepath.Join(home, "config"),
		"JUPYTER_DATA_DIR="+filepath.Join(home, "data"), "JUPYTER_RUNTIME_DIR="+filepath.Join(home, "runtime"))
	log := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start jupyter notebook: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("jupyter notebook output:\n%s", tail([]byte(log.String())))
		}
	})
	c := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for {
		req, _ := http.NewRequest("GET", nb.url+"/api/kernelspecs", nil)
		req.Header.Set("Authorization", "token "+nb.token)
		resp, err := c.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				// The notebook server lists the gateway's kernelspecs.
				if !strings.Contains(string(b), "sandboxd") {
					t.Fatalf("the notebook server's kernelspecs are not sandboxd's: %s", b)
				}
				return nb
			}
		}
		select {
		case <-exited:
			t.Fatalf("jupyter notebook exited before it served:\n%s", tail([]byte(log.String())))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("jupyter notebook did not serve within 60s (last: %v):\n%s", err, tail([]byte(log.String())))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestJupyterNotebookGateway: the same client, through Debian's notebook
// server started with --gateway-url, so Jupyter's real gateway client (its
// REST calls and its WebSocket proxy, JSON messages) is in the path; the
// daemon's token is the notebook server's, not the client's.
func TestJupyterNotebookGateway(t *testing.T) {
	node, script := requireJupyterClient(t)
	requireDaemon(t)
	token := "gateway-" + randomHex(16)
	d := startDaemon(t, daemonConfig{token: token})
	nb := startNotebook(t, d.url, token)
	runNodeClient(t, node, script, nb.url, nb.token, "-", d.url, token)
	if _, body := d.request(t, "GET", "/v1/sessions", nil, nil); string(body) != "{\"sessions\":[]}\n" {
		t.Errorf("sessions left after the kernel's shutdown: %s", body)
	}
}
