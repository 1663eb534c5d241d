package tests

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/sandboxd/sandboxd/internal/testenv"
)

// The Jupyter interoperability tests drive `sandboxd serve`'s kernel
// gateway API with Jupyter's own clients. tests/jupyter/kernel.mjs is the
// real @jupyterlab/services npm client (JupyterLab's), pinned by its
// lockfile; `npm ci --prefix tests/jupyter` installs it (scripts/test does).
//
// Like the API tests, none runs in parallel with another test: a live
// session of one would read as a leak to another test's check.

// requireJupyterClient stops the test (testenv.MissingNPMClient) unless
// node and the installed npm client are at hand, and returns node's path
// and the script's.
func requireJupyterClient(t *testing.T) (node, script string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		testenv.MissingNPMClient(t, "tests/jupyter", "no node on PATH")
	}
	dir, err := filepath.Abs("jupyter")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@jupyterlab", "services", "package.json")); err != nil {
		testenv.MissingNPMClient(t, "tests/jupyter", "tests/jupyter/node_modules/@jupyterlab/services is missing")
	}
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
