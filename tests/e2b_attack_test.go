package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/sandboxd/sandboxd/internal/e2b/envd/filesystem"
	"github.com/sandboxd/sandboxd/internal/e2b/envd/filesystem/filesystemconnect"
	"github.com/sandboxd/sandboxd/internal/e2b/envd/process"
	"github.com/sandboxd/sandboxd/internal/e2b/envd/process/processconnect"
)

// e2bSandbox is a sandbox made through /e2b, with what calls to it send.
type e2bSandbox struct {
	d         *daemon
	id, token string
	fs        filesystemconnect.FilesystemClient
	proc      processconnect.ProcessClient
}

// newE2BSandbox creates a sandbox with key, and Connect clients for it
// speaking JSON, as the JS SDK does.
func newE2BSandbox(t *testing.T, d *daemon, key string) *e2bSandbox {
	t.Helper()
	resp, body := d.request(t, "POST", "/e2b/sandboxes", []byte(`{}`), http.Header{"X-API-KEY": {key}})
	var sb struct{ SandboxID, EnvdAccessToken string }
	if err := json.Unmarshal(body, &sb); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	s := &e2bSandbox{d: d, id: sb.SandboxID, token: sb.EnvdAccessToken}
	hdr := connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			s.sign(req.Header())
			return next(ctx, req)
		}
	}))
	s.fs = filesystemconnect.NewFilesystemClient(d.http, d.url+"/e2b", connect.WithProtoJSON(), hdr)
	s.proc = processconnect.NewProcessClient(d.http, d.url+"/e2b", connect.WithProtoJSON())
	return s
}

func (s *e2bSandbox) sign(h http.Header) {
	h.Set("E2b-Sandbox-Id", s.id)
	h.Set("E2b-Sandbox-Port", "49983")
	h.Set("X-Access-Token", s.token)
}

// do sends a request to the sandbox's agent.
func (s *e2bSandbox) do(t *testing.T, method, target string, body []byte, hdr http.Header) (*http.Response, []byte) {
	t.Helper()
	if hdr == nil {
		hdr = http.Header{}
	}
	s.sign(hdr)
	return s.d.request(t, method, "/e2b"+target, body, hdr)
}

// execute runs Python in the sandbox and returns the NDJSON answer.
func (s *e2bSandbox) execute(t *testing.T, code string) string {
	t.Helper()
	resp, body := s.do(t, "POST", "/execute", mustJSON(t, map[string]string{"code": code}), nil)
	if resp.StatusCode != http.StatusOK || strings.Contains(string(body), `"type":"error"`) {
		t.Fatalf("execute %q: %d %s", code, resp.StatusCode, body)
	}
	return string(body)
}

// command runs a shell command in the sandbox through Process.Start and
// returns its stdout and exit code.
func (s *e2bSandbox) command(t *testing.T, cmd string) (string, int32) {
	t.Helper()
	req := connect.NewRequest(&process.StartRequest{Process: &process.ProcessConfig{Cmd: "/bin/bash", Args: []string{"-l", "-c", cmd}}})
	s.sign(req.Header())
	stream, err := s.proc.Start(t.Context(), req)
	if err != nil {
		t.Fatalf("start %q: %v", cmd, err)
	}
	defer stream.Close()
	var out bytes.Buffer
	exit := int32(-100)
	for stream.Receive() {
		ev := stream.Msg().GetEvent()
		out.Write(ev.GetData().GetStdout())
		if end := ev.GetEnd(); end != nil {
			exit = end.GetExitCode()
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("command %q: %v", cmd, err)
	}
	return out.String(), exit
}

// TestE2BAttackFiles: code in a sandbox plants symlinks to host
// directories in its workspace, then the E2B file calls try to use them:
// read, write, list, make a directory, remove. Each is refused and the
// host directory is untouched; the same calls on the sandbox's own files
// still work. Paths out of /home/user are refused before any lookup.
func TestE2BAttackFiles(t *testing.T) {
	requireDaemon(t)
	d, key, _ := e2bDaemon(t)
	sb := newE2BSandbox(t, d, key)
	host := t.TempDir()
	victim := filepath.Join(host, "victim")
	if err := os.WriteFile(victim, []byte("host secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	sb.execute(t, "import os\nos.symlink('/etc', 'etc')\nos.symlink("+pyQuote(host)+", 'host')\nopen('mine.txt', 'w').write('mine')")

	for _, p := range []string{"/home/user/etc/hostname", "/home/user/host/victim", "/etc/hostname", "/home/user/../../etc/hostname", "/root/.bashrc"} {
		resp, body := sb.do(t, "GET", "/files?path="+p, nil, nil)
		if resp.StatusCode < 400 || resp.StatusCode >= 500 || strings.Contains(string(body), "host secret") {
			t.Errorf("GET /files?path=%s: %d %q; want a 4xx", p, resp.StatusCode, body)
		}
	}
	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	fw, _ := mw.CreateFormFile("file", "/home/user/host/pwned")
	fw.Write([]byte("pwned"))
	mw.Close()
	resp, body := sb.do(t, "POST", "/files", form.Bytes(), http.Header{"Content-Type": {mw.FormDataContentType()}})
	if resp.StatusCode < 400 || resp.StatusCode >= 500 {
		t.Errorf("write through the symlink: %d %s; want a 4xx", resp.StatusCode, body)
	}
	ctx := t.Context()
	if _, err := sb.fs.ListDir(ctx, connect.NewRequest(&filesystem.ListDirRequest{Path: "/home/user/host", Depth: 1})); err == nil {
		t.Error("ListDir through the symlink succeeded")
	}
	if _, err := sb.fs.MakeDir(ctx, connect.NewRequest(&filesystem.MakeDirRequest{Path: "/home/user/host/evil"})); err == nil {
		t.Error("MakeDir through the symlink succeeded")
	}
	if _, err := sb.fs.Remove(ctx, connect.NewRequest(&filesystem.RemoveRequest{Path: "/home/user/host/victim"})); err == nil {
		t.Error("Remove through the symlink succeeded")
	}
	if _, err := sb.fs.Remove(ctx, connect.NewRequest(&filesystem.RemoveRequest{Path: "/etc/hostname"})); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Errorf("Remove /etc/hostname: %v; want invalid argument", err)
	}
	ents, err := os.ReadDir(host)
	if err != nil || len(ents) != 1 {
		t.Errorf("the host directory changed: %v %v", ents, err)
	}
	if b, err := os.ReadFile(victim); err != nil || string(b) != "host secret" {
		t.Errorf("the host file changed: %q %v", b, err)
	}
	// Bystander: the sandbox's own files, and removing the link itself
	// (not its target).
	if resp, body := sb.do(t, "GET", "/files?path=/home/user/mine.txt", nil, nil); resp.StatusCode != http.StatusOK || string(body) != "mine" {
		t.Errorf("reading the sandbox's own file: %d %q", resp.StatusCode, body)
	}
	if _, err := sb.fs.Remove(ctx, connect.NewRequest(&filesystem.RemoveRequest{Path: "/home/user/host"})); err != nil {
		t.Errorf("removing the link: %v", err)
	}
	if _, err := os.Stat(victim); err != nil {
		t.Errorf("removing the link removed its target: %v", err)
	}
}

// TestE2BAttackCommands: a command runs inside the sandbox, not on the
// host: a file the host has in /tmp and its /root are not there, and a
// file the command writes to /tmp stays in the sandbox (the shell is the
// SDK's bash, inside the sandbox; the daemon runs none). Bystander: the
// command's own work is there, in its workspace, where it starts.
func TestE2BAttackCommands(t *testing.T) {
	requireDaemon(t)
	d, key, _ := e2bDaemon(t)
	sb := newE2BSandbox(t, d, key)
	marker, err := os.CreateTemp("/tmp", "sandboxd-e2b-marker-")
	if err != nil {
		t.Fatal(err)
	}
	marker.Close()
	t.Cleanup(func() { os.Remove(marker.Name()) })
	planted := "/tmp/sandboxd-e2b-planted-" + filepath.Base(t.TempDir())
	t.Cleanup(func() { os.Remove(planted) })

	if out, code := sb.command(t, "ls "+marker.Name()+" /root/ 2>&1"); code == 0 || strings.Contains(out, filepath.Base(marker.Name())) && !strings.Contains(out, "No such file") {
		t.Errorf("the host's /tmp or /root is visible to a command: exit %d, %q", code, out)
	}
	if _, code := sb.command(t, "echo x > "+planted+"; echo mine > /home/user/own.txt; cat "+planted); code != 0 {
		t.Errorf("writing in the sandbox failed: exit %d", code)
	}
	if _, err := os.Stat(planted); !os.IsNotExist(err) {
		t.Errorf("a command's write to /tmp reached the host: %v", err)
	}
	if out, code := sb.command(t, "cat own.txt"); code != 0 || out != "mine\n" {
		t.Errorf("a command in the workspace: exit %d, %q", code, out)
	}
	if resp, body := sb.do(t, "GET", "/files?path=own.txt", nil, nil); resp.StatusCode != http.StatusOK || string(body) != "mine\n" {
		t.Errorf("the command's file through files.read: %d %q", resp.StatusCode, body)
	}
}

// pyQuote is s as a Python string literal (JSON's escapes are Python's).
func pyQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestE2BDeadKernel: a cell that ends its kernel gets an error event
// saying so; the sandbox is then not running for the SDK (health 502,
// isRunning() false), and kill() still removes it (true). A second
// sandbox of the same key, the bystander, runs on.
func TestE2BDeadKernel(t *testing.T) {
	requireDaemon(t)
	d, key, _ := e2bDaemon(t)
	sb := newE2BSandbox(t, d, key)
	other := newE2BSandbox(t, d, key)
	resp, body := sb.do(t, "POST", "/execute", []byte(`{"code":"import os\nos._exit(3)"}`), nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"type":"error"`) || !strings.Contains(string(body), "exited with code 3") {
		t.Errorf("execute os._exit(3): %d %s; want an error event naming the exit", resp.StatusCode, body)
	}
	if resp, body := sb.do(t, "GET", "/health", nil, nil); resp.StatusCode != http.StatusBadGateway {
		t.Errorf("health of a dead kernel's sandbox: %d %s; want 502", resp.StatusCode, body)
	}
	if resp, _ := other.do(t, "GET", "/health", nil, nil); resp.StatusCode != http.StatusNoContent {
		t.Errorf("the bystander sandbox's health: %d; want 204", resp.StatusCode)
	}
	other.execute(t, "1+1")
	if resp, body := d.request(t, "DELETE", "/e2b/sandboxes/"+sb.id, nil, http.Header{"X-API-KEY": {key}}); resp.StatusCode != http.StatusNoContent {
		t.Errorf("kill of the dead sandbox: %d %s; want 204", resp.StatusCode, body)
	}
}
