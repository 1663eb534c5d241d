package tests

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSessionFiles: the workspace through the file endpoints, while the
// kernel works in it.
func TestSessionFiles(t *testing.T) {
	requireDaemon(t)
	d := startDaemon(t, daemonConfig{})
	s := d.createSession(t, map[string]any{"limits": map[string]any{"tmpfs": "2MiB"}})
	base := "/v1/sessions/" + s.ID + "/files/"

	// Uploaded, then read by a cell.
	binary := make([]byte, 256)
	for i := range binary {
		binary[i] = byte(i)
	}
	resp, body := d.request(t, "PUT", base+"in/bytes.bin", binary, nil)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT: %s\n%s", resp.Status, body)
	}
	var fi struct {
		Name  string    `json:"name"`
		Type  string    `json:"type"`
		Size  int64     `json:"size"`
		Mode  uint32    `json:"mode"`
		MTime time.Time `json:"mtime"`
	}
	if err := newStrictDecoder(body).Decode(&fi); err != nil || fi.Name != "in/bytes.bin" || fi.Size != 256 || fi.Type != "file" || fi.Mode != 0o644 {
		t.Errorf("PUT answer %+v (%v): %s", fi, err, body)
	}
	if c := d.okCell(t, s.ID, "data = open('in/bytes.bin','rb').read()\n(len(data), data == bytes(range(256)))"); c.Result["text/plain"] != "(256, True)" {
		t.Errorf("a cell reads the upload: %s", c)
	}
	resp, body = d.request(t, "PUT", base+"run.sh?mode=0755", []byte("#!/bin/sh\necho ran\n"), nil)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT with mode: %s\n%s", resp.Status, body)
	}
	if c := d.okCell(t, s.ID, "import os, stat, subprocess\n(oct(stat.S_IMODE(os.stat('run.sh').st_mode)), subprocess.run(['./run.sh'], capture_output=True, text=True).stdout)"); c.Result["text/plain"] != "('0o755', 'ran\\n')" {
		t.Errorf("an executable upload: %s", c)
	}
	resp, body = d.request(t, "PUT", base+"x?mode=4755", []byte("x"), nil)
	wantAPIError(t, resp, body, http.StatusBadRequest, "invalid_argument")

	// Written by a cell, then downloaded.
	d.okCell(t, s.ID, "with open('result.bin','wb') as f: f.write(bytes(range(256)) * 3)\nos.makedirs('plots/q1', exist_ok=True)\nopen('plots/q1/a \"b\".txt','w').write('quoted')")
	resp, body = d.request(t, "GET", base+"result.bin", nil, nil)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, bytes.Repeat(binary, 3)) {
		t.Fatalf("GET a file a cell wrote: %s, %d bytes", resp.Status, len(body))
	}
	for k, want := range map[string]string{"Content-Type": "application/octet-stream", "Content-Length": "768", "X-Content-Type-Options": "nosniff"} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if _, params, err := mime.ParseMediaType(resp.Header.Get("Content-Disposition")); err != nil || params["filename"] != "result.bin" {
		t.Errorf("Content-Disposition %q", resp.Header.Get("Content-Disposition"))
	}
	resp, body = d.request(t, "GET", base+"plots/q1/a%20%22b%22.txt", nil, nil)
	cd := resp.Header.Get("Content-Disposition")
	if _, params, err := mime.ParseMediaType(cd); resp.StatusCode != 200 || string(body) != "quoted" || err != nil || params["filename"] != `a "b".txt` {
		t.Errorf("a quoted name: %s %q, Content-Disposition %q", resp.Status, body, cd)
	}

	// The listing.
	list := d.listFiles(t, s.ID, "")
	for _, want := range []string{"in", "in/bytes.bin", "run.sh", "result.bin", "plots", "plots/q1", `plots/q1/a "b".txt`} {
		if _, ok := list[want]; !ok {
			t.Errorf("the listing lacks %q: %v", want, list)
		}
	}
	if e := list["in"]; e.Type != "dir" {
		t.Errorf("in: %+v", e)
	}
	if e := list["run.sh"]; e.Mode != 0o755 || e.Size != 19 {
		t.Errorf("run.sh: %+v", e)
	}
	if sub := d.listFiles(t, s.ID, "plots"); len(sub) != 2 {
		t.Errorf("?dir=plots: %v", sub)
	}
	resp, body = d.request(t, "GET", "/v1/sessions/"+s.ID+"/files?dir=nope", nil, nil)
	wantAPIError(t, resp, body, http.StatusNotFound, "not_found")

	// Deleting: a file, then a directory only once empty.
	resp, body = d.request(t, "DELETE", base+"in/bytes.bin", nil, nil)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE a file: %s\n%s", resp.Status, body)
	}
	resp, body = d.request(t, "GET", base+"in/bytes.bin", nil, nil)
	wantAPIError(t, resp, body, http.StatusNotFound, "not_found")
	if c := d.execCell(t, s.ID, "open('in/bytes.bin')"); c.Error == nil || c.Error.Name != "FileNotFoundError" {
		t.Errorf("a deleted file in a cell: %s", c)
	}
	resp, body = d.request(t, "DELETE", base+"plots", nil, nil)
	wantAPIError(t, resp, body, http.StatusConflict, "conflict")
	resp, body = d.request(t, "DELETE", base+"in", nil, nil)
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("DELETE an empty directory: %s\n%s", resp.Status, body)
	}
	resp, body = d.request(t, "GET", base+"plots", nil, nil)
	wantAPIError(t, resp, body, http.StatusBadRequest, "invalid_argument")
	resp, body = d.request(t, "DELETE", base+"never-was", nil, nil)
	wantAPIError(t, resp, body, http.StatusNotFound, "not_found")

	// Caps: larger than the workspace is 413, a full workspace 507, and
	// neither leaves a partial file.
	resp, body = d.request(t, "PUT", base+"huge.bin", bytes.Repeat([]byte("x"), 3<<20), nil)
	wantAPIError(t, resp, body, http.StatusRequestEntityTooLarge, "payload_too_large")
	resp, body = d.request(t, "PUT", base+"big1.bin", bytes.Repeat([]byte("x"), 1200<<10), nil)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT 1.2 MiB into 2 MiB: %s\n%s", resp.Status, body)
	}
	resp, body = d.request(t, "PUT", base+"big2.bin", bytes.Repeat([]byte("y"), 1200<<10), nil)
	wantAPIError(t, resp, body, http.StatusInsufficientStorage, "insufficient_storage")
	list = d.listFiles(t, s.ID, "")
	if _, ok := list["big2.bin"]; ok {
		t.Errorf("a failed upload left its file: %v", list["big2.bin"])
	}
	if _, ok := list["huge.bin"]; ok {
		t.Errorf("a refused upload left its file")
	}

	// A dead session's workspace went with its kernel: every file request
	// is a 409 that says why it died.
	c := d.execCell(t, s.ID, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
	if c.State != "dead" {
		t.Fatalf("a kernel that killed itself: %s", c)
	}
	for _, r := range []struct{ method, path string }{
		{"GET", base + "result.bin"}, {"GET", "/v1/sessions/" + s.ID + "/files"},
		{"PUT", base + "late.txt"}, {"DELETE", base + "result.bin"}, {"POST", "/v1/sessions/" + s.ID + "/exec"},
	} {
		var body []byte
		if r.method != "GET" && r.method != "DELETE" {
			body = []byte(`{"code":"1"}`)
		}
		resp, body = d.request(t, r.method, r.path, body, nil)
		if msg := wantAPIError(t, resp, body, http.StatusConflict, "conflict"); !strings.Contains(msg, "dead") || !strings.Contains(msg, "SIGKILL") {
			t.Errorf("%s %s in a dead session: %q; want it dead and why", r.method, r.path, msg)
		}
	}
}

type fileEntry struct {
	Name  string    `json:"name"`
	Type  string    `json:"type"`
	Size  int64     `json:"size"`
	Mode  uint32    `json:"mode"`
	MTime time.Time `json:"mtime"`
}

// listFiles lists a session's workspace (under dir) by name.
func (d *daemon) listFiles(t *testing.T, id, dir string) map[string]fileEntry {
	t.Helper()
	path := "/v1/sessions/" + id + "/files"
	if dir != "" {
		path += "?dir=" + dir
	}
	resp, body := d.request(t, "GET", path, nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s\n%s", path, resp.Status, tail(body))
	}
	var l struct {
		Files     []fileEntry `json:"files"`
		Truncated bool        `json:"truncated"`
	}
	if err := newStrictDecoder(body).Decode(&l); err != nil {
		t.Fatalf("the listing (%v):\n%s", err, tail(body))
	}
	out := map[string]fileEntry{}
	for _, f := range l.Files {
		out[f.Name] = f
	}
	return out
}

func (d *daemon) rawRequest(t *testing.T, method, target string, body []byte) (*http.Response, []byte) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", d.addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	var req bytes.Buffer
	fmt.Fprintf(&req, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nContent-Length: %d\r\n", method, target, d.addr, len(body))
	if d.token != "" {
		fmt.Fprintf(&req, "Authorization: Bearer %s\r\n", d.token)
	}
	req.WriteString("\r\n")
	req.Write(body)
	if _, err := conn.Write(req.Bytes()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	return resp, b
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// TestSessionTraversal: no path a client sends, however spelled, and no
// symlink a cell plants reaches outside the session's workspace: every
// attempt is a 400, reads nothing and writes or removes nothing.
func TestSessionTraversal(t *testing.T) {
	requireDaemon(t)
	d := startDaemon(t, daemonConfig{})
	s := d.createSession(t, map[string]any{})
	hostDir := t.TempDir()
	if err := os.Chmod(hostDir, 0o755); err != nil {
		t.Fatal(err)
	}
	canary := filepath.Join(hostDir, "canary")
	if err := os.WriteFile(canary, []byte("host canary"), 0o644); err != nil {
		t.Fatal(err)
	}
	passwd := fileSum(t, "/etc/passwd")
	// Should a write ever get through, the host keeps its users.
	saved, err := os.ReadFile("/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if fileSum(t, "/etc/passwd") != passwd {
			_ = os.WriteFile("/etc/passwd", saved, 0o644)
		}
		os.Remove("/etc/passwd-sandboxd-test")
	})
	// A cell plants symlinks to host paths and keeps a file of its own.
	d.okCell(t, s.ID, fmt.Sprintf("import os\nos.symlink('/etc/passwd', 'leak')\nos.symlink('/etc', 'etcdir')\nos.symlink(%q, 'canary')\nos.symlink(%q, 'hostdir')\nos.makedirs('a')\nopen('keep.txt','w').write('mine')", canary, hostDir))

	base := "/v1/sessions/" + s.ID + "/files"
	paths := []string{
		base + "/../../etc/passwd",
		base + "/..",
		base + "/a/../keep.txt",
		base + "/./keep.txt",
		base + "/%2e%2e/%2e%2e/etc/passwd",
		base + "/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
		base + "/%2F..%2F..%2Fetc%2Fpasswd",
		base + "/a%2F..%2Fkeep.txt",
		base + "//etc/passwd",
		base + "/%2Fetc%2Fpasswd",
		base + "/..%5C..%5Cetc%5Cpasswd",
		base + "/a%5Ckeep.txt",
		base + "/keep.txt%00.png",
		base + "/%00",
		"/v1/sessions/" + s.ID + "/../" + s.ID + "/files/keep.txt",
		"/v1/sessions/%2e%2e/runs",
		"/v1/runs/../sessions/" + s.ID + "/files/keep.txt",
		// Through a symlink the cell planted: followed by no one.
		base + "/etcdir/passwd",
		base + "/etcdir/passwd-sandboxd-test",
		base + "/hostdir/canary",
		base + "/hostdir/new",
	}
	for _, p := range paths {
		for _, method := range []string{"GET", "PUT", "DELETE"} {
			resp, body := d.rawRequest(t, method, p, []byte("owned\n"))
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("%s %s: %s, want 400:\n%s", method, p, resp.Status, tail(body))
			}
			if bytes.Contains(body, []byte("root:x:0:0")) || bytes.Contains(body, []byte("host canary")) {
				t.Errorf("%s %s: the answer has a host file's content", method, p)
			}
		}
	}
	// The symlinks themselves are neither read nor written through.
	for _, name := range []string{"leak", "canary"} {
		for _, method := range []string{"GET", "PUT"} {
			resp, body := d.rawRequest(t, method, base+"/"+name, []byte("owned\n"))
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("%s %s: %s, want 400:\n%s", method, name, resp.Status, tail(body))
			}
			if bytes.Contains(body, []byte("root:x:0:0")) || bytes.Contains(body, []byte("host canary")) {
				t.Errorf("%s %s: the answer has a host file's content", method, name)
			}
		}
	}
	for _, q := range []string{"?dir=..", "?dir=/etc", "?dir=etcdir", "?dir=hostdir", "?dir=a/..", "?dir=%2e%2e"} {
		resp, body := d.rawRequest(t, "GET", base+q, nil)
		if resp.StatusCode != http.StatusBadRequest || bytes.Contains(body, []byte("passwd")) || bytes.Contains(body, []byte("canary")) {
			t.Errorf("GET files%s: %s\n%s", q, resp.Status, tail(body))
		}
	}
	// A raw backslash in the request line: refused by the API or by
	// net/http, never served.
	for _, method := range []string{"GET", "PUT", "DELETE"} {
		resp, body := d.rawRequest(t, method, base+`/..\..\etc\passwd`, []byte("owned\n"))
		if resp.StatusCode != http.StatusBadRequest || bytes.Contains(body, []byte("root:x:0:0")) {
			t.Errorf("%s with a backslash: %s\n%s", method, resp.Status, tail(body))
		}
	}

	// Nothing outside changed, nothing inside was removed.
	if fileSum(t, "/etc/passwd") != passwd {
		t.Fatalf("/etc/passwd CHANGED")
	}
	if b, err := os.ReadFile(canary); err != nil || string(b) != "host canary" {
		t.Errorf("the host canary: %q %v", b, err)
	}
	if ents, _ := os.ReadDir(hostDir); len(ents) != 1 {
		t.Errorf("the host dir has %d entries, want the canary alone", len(ents))
	}
	if _, err := os.Stat("/etc/passwd-sandboxd-test"); err == nil {
		t.Errorf("a file appeared in /etc")
	}
	list := d.listFiles(t, s.ID, "")
	if _, ok := list["keep.txt"]; !ok {
		t.Errorf("keep.txt is gone: %v", list)
	}
	if e := list["leak"]; e.Type != "symlink" {
		t.Errorf("the planted symlink: %+v (listed, never followed)", e)
	}
	if c := d.okCell(t, s.ID, "open('keep.txt').read(), os.readlink('leak')"); c.Result["text/plain"] != "('mine', '/etc/passwd')" {
		t.Errorf("inside, after the attempts: %s", c)
	}
	// Deleting a symlink removes the link, never its target.
	for _, name := range []string{"leak", "canary"} {
		if resp, body := d.rawRequest(t, "DELETE", base+"/"+name, nil); resp.StatusCode != http.StatusNoContent {
			t.Errorf("DELETE the symlink %s: %s\n%s", name, resp.Status, tail(body))
		}
	}
	if fileSum(t, "/etc/passwd") != passwd {
		t.Fatalf("/etc/passwd CHANGED")
	}
	if b, err := os.ReadFile(canary); err != nil || string(b) != "host canary" {
		t.Errorf("the host canary after its link was deleted: %q %v", b, err)
	}
	if list := d.listFiles(t, s.ID, ""); list["leak"].Name != "" || list["canary"].Name != "" {
		t.Errorf("the deleted links are still listed")
	}
}
