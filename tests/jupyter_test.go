package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
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
	node, dir := requireNPMClient(t, "jupyter", "@jupyterlab/services")
	return node, filepath.Join(dir, "kernel.mjs")
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

// notebookServer is one of Debian's Jupyter servers with its kernels on
// the daemon (--gateway-url).
type notebookServer struct {
	url, token string
	dir        string // the notebooks' directory
}

// jupyterServers are the Debian Jupyter servers that take --gateway-url:
// the classic notebook (6) and jupyter_server (the base of JupyterLab and
// notebook 7), each with the file that shows it is installed and the
// argv that starts it, the option naming its token last.
var jupyterServers = []struct {
	name, installed string
	argv            []string
	tokenOption     string
}{
	{"notebook", "/usr/bin/jupyter-notebook", []string{"/usr/bin/jupyter-notebook"}, "--NotebookApp.token="},
	{"jupyter_server", "/usr/lib/python3/dist-packages/jupyter_server", []string{"/usr/bin/python3", "-m", "jupyter_server"}, "--ServerApp.token="},
}

// startNotebook starts Debian's notebook server (jupyterServers[0])
// against the daemon.
func startNotebook(t *testing.T, gatewayURL, gatewayToken string) *notebookServer {
	t.Helper()
	return startJupyterServer(t, 0, gatewayURL, gatewayToken)
}

// startJupyterServer starts jupyterServers[which] against the daemon at
// gatewayURL. Its configuration, data and runtime files go to a temporary
// home, so nothing of the host's Jupyter setup is in the path. Cleanup
// stops it.
func startJupyterServer(t *testing.T, which int, gatewayURL, gatewayToken string) *notebookServer {
	t.Helper()
	js := jupyterServers[which]
	if _, err := os.Stat(js.installed); err != nil {
		testenv.MissingFile(t, js.installed)
	}
	home := t.TempDir()
	nb := &notebookServer{token: "nb-" + randomHex(16), dir: home}
	port := freePort(t)
	nb.url = fmt.Sprintf("http://127.0.0.1:%d", port)
	args := slices.Concat(js.argv[1:], []string{"--no-browser", "--allow-root", "--ip=127.0.0.1", fmt.Sprintf("--port=%d", port),
		js.tokenOption + nb.token, "--notebook-dir=" + home,
		"--gateway-url=" + gatewayURL, "--GatewayClient.auth_token=" + gatewayToken})
	cmd := exec.Command(js.argv[0], args...)
	cmd.Env = append(daemonEnv(), "HOME="+home, "JUPYTER_CONFIG_DIR="+filepath.Join(home, "config"),
		"JUPYTER_DATA_DIR="+filepath.Join(home, "data"), "JUPYTER_RUNTIME_DIR="+filepath.Join(home, "runtime"))
	log := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", js.name, err)
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
			t.Logf("%s output:\n%s", js.name, tail([]byte(log.String())))
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
				// The server lists the gateway's kernelspecs.
				if !strings.Contains(string(b), "sandboxd") {
					t.Fatalf("%s's kernelspecs are not sandboxd's: %s", js.name, b)
				}
				return nb
			}
		}
		select {
		case <-exited:
			t.Fatalf("%s exited before it served:\n%s", js.name, tail([]byte(log.String())))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not serve within 60s (last: %v):\n%s", js.name, err, tail([]byte(log.String())))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestJupyterNotebookGateway: the same client, through each of Debian's
// Jupyter servers started with --gateway-url, so Jupyter's real gateway
// client (its REST calls and its WebSocket proxy, JSON messages) is in the
// path; the daemon's token is the server's, not the client's.
func TestJupyterNotebookGateway(t *testing.T) {
	node, script := requireJupyterClient(t)
	requireDaemon(t)
	for i, js := range jupyterServers {
		t.Run(js.name, func(t *testing.T) {
			token := "gateway-" + randomHex(16)
			d := startDaemon(t, daemonConfig{token: token})
			nb := startJupyterServer(t, i, d.url, token)
			runNodeClient(t, node, script, nb.url, nb.token, "-", d.url, token)
			if _, body := d.request(t, "GET", "/v1/sessions", nil, nil); string(body) != "{\"sessions\":[]}\n" {
				t.Errorf("sessions left after the kernel's shutdown: %s", body)
			}
		})
	}
}

// TestJupyterDaemonShutdown: SIGTERM while a notebook's cell runs and its
// WebSocket is open. http.Server.Shutdown does not wait for hijacked
// connections, so the daemon closes them itself: the client gets a close
// frame saying why, the daemon exits 0 promptly, and the kernel's sandbox
// is gone (the state dir's cleanup checks for leftovers).
func TestJupyterDaemonShutdown(t *testing.T) {
	requireDaemon(t)
	d := startDaemon(t, daemonConfig{})
	resp, body := d.request(t, "POST", "/api/kernels", []byte(`{"name":"python3"}`), nil)
	var k struct{ ID string }
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(body, &k) != nil {
		t.Fatalf("POST /api/kernels: %d %s", resp.StatusCode, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+d.addr+"/api/kernels/"+k.ID+"/channels", nil)
	if err != nil {
		t.Fatalf("dial the channels: %v", err)
	}
	defer ws.CloseNow()
	req := `{"channel":"shell","header":{"msg_id":"cell-1","msg_type":"execute_request","session":"s","username":"u","version":"5.3","date":""},` +
		`"parent_header":{},"metadata":{},"content":{"code":"import time\nprint('started', flush=True)\ntime.sleep(60)"}}`
	if err := ws.Write(ctx, websocket.MessageText, []byte(req)); err != nil {
		t.Fatal(err)
	}
	for {
		_, b, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("waiting for the cell to start: %v", err)
		}
		if strings.Contains(string(b), `"started`) {
			break
		}
	}
	took := d.stop(t, 15*time.Second)
	if took > 10*time.Second {
		t.Errorf("the daemon took %s to stop with a kernel's WebSocket open", took)
	}
	for {
		if _, _, err := ws.Read(ctx); err != nil {
			if websocket.CloseStatus(err) != websocket.StatusNormalClosure || !strings.Contains(err.Error(), "shutting down") {
				t.Errorf("the WebSocket ended with %v, want a normal close saying the daemon is shutting down", err)
			}
			break
		}
	}
}
