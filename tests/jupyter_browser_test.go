package tests

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"image/png"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sandboxd/sandboxd/internal/testenv"
)

// TestJupyterNotebookBrowser: a real browser, Debian's headless Chromium,
// opens a notebook in the notebook UI served against the daemon (notebook
// --gateway-url) and runs it: a cell that prints where it runs and a cell
// that draws a matplotlib figure. The test reads the rendered page: the
// text, and an <img> whose PNG decodes. The first cell reports the
// sandbox's hostname and a pid namespace that is not the host's, so it ran
// in a sandbox. A screenshot is saved as an artifact
// ($SANDBOXD_TEST_ARTIFACTS, default tests/artifacts).
func TestJupyterNotebookBrowser(t *testing.T) {
	requireDaemon(t)
	chromium := requireChromium(t)
	token := "browser-" + randomHex(16)
	d := startDaemon(t, daemonConfig{token: token})
	nb := startNotebook(t, d.url, token)
	writeNotebook(t, nb.dir, "sandbox.ipynb", []string{
		"import os, socket\nprint('host=%s pidns=%s' % (socket.gethostname(), os.readlink('/proc/self/ns/pid')))",
		"import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.title('in the sandbox')\nplt.show()",
	})

	page := openPage(t, chromium, nb.url+"/notebooks/sandbox.ipynb?token="+nb.token)
	page.waitFor(t, "the notebook's kernel to connect", `typeof Jupyter !== "undefined" && !!Jupyter.notebook && !!Jupyter.notebook.kernel && Jupyter.notebook.kernel.is_connected()`)
	page.eval(t, `Jupyter.notebook.execute_all_cells(), true`)
	page.waitFor(t, "both cells' output", `document.querySelectorAll(".output_subarea.output_stream").length > 0 && document.querySelectorAll(".output_png img").length > 0`)
	var out struct {
		Text   string   `json:"text"`
		Images []string `json:"images"`
		Errors int      `json:"errors"`
	}
	page.evalInto(t, `({text: [...document.querySelectorAll(".output_subarea.output_stream")].map(e => e.innerText).join(""),
		images: [...document.querySelectorAll(".output_png img")].map(i => i.src),
		errors: document.querySelectorAll(".output_error").length})`, &out)
	page.screenshot(t, "jupyter-notebook-browser.png")

	hostNS, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`host=(\S+) pidns=(\S+)`).FindStringSubmatch(out.Text)
	if m == nil {
		t.Fatalf("the first cell's rendered output: %q", out.Text)
	}
	if m[1] != "sandbox" || m[2] == hostNS {
		t.Errorf("the cell ran on host %q in pid namespace %s (the host's is %s): want the sandbox's", m[1], m[2], hostNS)
	}
	if out.Errors != 0 {
		t.Errorf("%d cells rendered an error", out.Errors)
	}
	if len(out.Images) != 1 {
		t.Fatalf("%d images rendered, want the figure", len(out.Images))
	}
	b64, ok := strings.CutPrefix(out.Images[0], "data:image/png;base64,")
	if !ok {
		t.Fatalf("the figure's src is not a PNG data URL: %.60q", out.Images[0])
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatalf("the figure's base64: %v", err)
	}
	img, err := png.Decode(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("the figure does not decode as a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 100 || b.Dy() < 100 {
		t.Errorf("the figure is %dx%d", b.Dx(), b.Dy())
	}
}

// requireChromium returns Debian's chromium, or stops the test.
func requireChromium(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("/usr/bin/chromium"); err != nil {
		testenv.MissingFile(t, "/usr/bin/chromium")
	}
	return "/usr/bin/chromium"
}

// writeNotebook writes a notebook (nbformat 4, the python3 kernel) of the
// code cells given.
func writeNotebook(t *testing.T, dir, name string, cells []string) {
	t.Helper()
	var cs []map[string]any
	for _, c := range cells {
		cs = append(cs, map[string]any{"cell_type": "code", "execution_count": nil, "metadata": map[string]any{}, "outputs": []any{}, "source": c})
	}
	nbJSON, err := json.Marshal(map[string]any{
		"nbformat": 4, "nbformat_minor": 5, "cells": cs,
		"metadata": map[string]any{"kernelspec": map[string]string{"name": "python3", "display_name": "Python 3 (sandboxd)", "language": "python"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), nbJSON, 0o644); err != nil {
		t.Fatal(err)
	}
}

// cdpPage is one page of a headless Chromium, driven over the DevTools
// protocol.
type cdpPage struct {
	ws   *websocket.Conn
	next atomic.Int64
}

// openPage starts Chromium headless on url and connects to the page. Its
// profile is a temporary directory; cleanup ends the browser.
func openPage(t *testing.T, chromium, url string) *cdpPage {
	t.Helper()
	profile := t.TempDir()
	// --no-sandbox: the test runs as root, where Chromium's own sandbox
	// refuses to start.
	cmd := exec.Command(chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--user-data-dir="+profile, "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
		"--window-size=1200,1600", url)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	exited := make(chan struct{})
	var log bytes.Buffer
	devtools := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			if u, ok := strings.CutPrefix(line, "DevTools listening on "); ok {
				select {
				case devtools <- u:
				default:
				}
			} else if log.Len() < 64<<10 {
				log.WriteString(line + "\n")
			}
		}
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		// The browser's renderers and helpers are its process group.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	var browserURL string
	select {
	case browserURL = <-devtools:
	case <-exited:
		t.Fatalf("chromium exited before it listened:\n%s", log.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("chromium did not listen within 60s")
	}
	// The page's own endpoint: /json/list on the browser's port.
	hostport := strings.TrimPrefix(browserURL, "ws://")
	hostport = hostport[:strings.IndexByte(hostport, '/')]
	var wsURL string
	deadline := time.Now().Add(30 * time.Second)
	for wsURL == "" {
		resp, err := http.Get("http://" + hostport + "/json/list")
		if err == nil {
			var targets []struct {
				Type, URL, WebSocketDebuggerURL string
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			_ = json.Unmarshal(b, &targets)
			for _, tg := range targets {
				if tg.Type == "page" && strings.Contains(tg.URL, "/notebooks/") {
					wsURL = tg.WebSocketDebuggerURL
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("chromium shows no page of the notebook (last: %v)", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, wsURL, nil)
	if err != nil {
		t.Fatalf("connect to the page: %v", err)
	}
	ws.SetReadLimit(64 << 20)
	t.Cleanup(func() { ws.CloseNow() })
	return &cdpPage{ws: ws}
}

// call sends one DevTools command and returns its result, skipping the
// events in between.
func (p *cdpPage) call(t *testing.T, method string, params any) json.RawMessage {
	t.Helper()
	id := p.next.Add(1)
	req, _ := json.Marshal(map[string]any{"id": id, "method": method, "params": params})
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if err := p.ws.Write(ctx, websocket.MessageText, req); err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	for {
		_, b, err := p.ws.Read(ctx)
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		var resp struct {
			ID     int64           `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  *struct{ Message string }
		}
		if json.Unmarshal(b, &resp) != nil || resp.ID != id {
			continue
		}
		if resp.Error != nil {
			t.Fatalf("%s: %s", method, resp.Error.Message)
		}
		return resp.Result
	}
}

// evalInto evaluates a JavaScript expression in the page and decodes its
// value into out.
func (p *cdpPage) evalInto(t *testing.T, expr string, out any) {
	t.Helper()
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	if err := json.Unmarshal(p.call(t, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true}), &r); err != nil {
		t.Fatal(err)
	}
	if r.ExceptionDetails != nil {
		t.Fatalf("%s: threw %s", expr, r.ExceptionDetails.Text)
	}
	if err := json.Unmarshal(r.Result.Value, out); err != nil {
		t.Fatalf("%s: %v (%s)", expr, err, r.Result.Value)
	}
}

func (p *cdpPage) eval(t *testing.T, expr string) {
	t.Helper()
	var v any
	p.evalInto(t, expr, &v)
}

// waitFor polls a JavaScript condition until it holds (90 s at most: a
// cold notebook UI on a loaded machine loads slowly).
func (p *cdpPage) waitFor(t *testing.T, what, cond string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		var ok bool
		p.evalInto(t, "(() => { try { return !!("+cond+"); } catch (e) { return false; } })()", &ok)
		if ok {
			return
		}
		if time.Now().After(deadline) {
			p.screenshot(t, "jupyter-notebook-browser-timeout.png")
			t.Fatalf("waited 90s for %s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// screenshot saves the page as a PNG in the artifacts directory.
func (p *cdpPage) screenshot(t *testing.T, name string) {
	t.Helper()
	var r struct {
		Data string `json:"data"`
	}
	if err := json.Unmarshal(p.call(t, "Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true}), &r); err != nil {
		t.Fatal(err)
	}
	b, err := base64.StdEncoding.DecodeString(r.Data)
	if err != nil {
		t.Fatal(err)
	}
	dir := os.Getenv("SANDBOXD_TEST_ARTIFACTS")
	if dir == "" {
		dir = "artifacts"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(path)
	t.Logf("screenshot: %s", abs)
}
