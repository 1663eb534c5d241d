package cli

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/client/clienttest"
	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/wire"
)

// sandboxctl runs Main in-process and returns its stdout, stderr and exit
// code.
func sandboxctl(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Main(args, strings.NewReader(stdin), &out, &errOut)
	return out.String(), errOut.String(), code
}

// fakeDaemon is a fake session API that sandboxctl finds through
// $SANDBOXD_SERVER and $SANDBOXD_TOKEN.
func fakeDaemon(t *testing.T) *clienttest.Server {
	srv := clienttest.New(t)
	srv.Token = "secret"
	t.Setenv("SANDBOXD_SERVER", srv.URL)
	t.Setenv("SANDBOXD_TOKEN", "secret")
	return srv
}

// pngOf is a base64 PNG of w×h pixels.
func pngOf(t *testing.T, w, h int) string {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, image.NewGray(image.Rect(0, 0, w, h))); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b.Bytes())
}

func TestSessionNew(t *testing.T) {
	srv := fakeDaemon(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data.csv")
	if err := os.WriteFile(data, []byte("a,b\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := sandboxctl(t, "", "session", "new", "--runtime", "python", "--idle", "5m", "--memory", "512MiB", "--timeout", "30s",
		"--file", data, "--file", data+":in/renamed.csv", "--env", "A=1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	id := strings.TrimSpace(out)
	s, ok := srv.Session(id)
	if !ok || out != id+"\n" {
		t.Fatalf("printed %q, not the id of a session", out)
	}
	sp := s.Spec
	if sp.Runtime != "python" || sp.IdleTimeout != limits.Duration(5*time.Minute) || sp.Limits.Memory != 512*limits.MiB || sp.Limits.Timeout.String() != "30s" ||
		sp.Env["A"] != "1" || string(s.Files["data.csv"]) != "a,b\n" || string(s.Files["in/renamed.csv"]) != "a,b\n" {
		t.Errorf("the daemon got %+v, files %q", sp, s.Files)
	}

	out, _, code = sandboxctl(t, "", "session", "new", "--json")
	var info run.SessionInfo
	if err := json.Unmarshal([]byte(out), &info); code != 0 || err != nil || info.ID == "" || info.State != run.SessionIdle {
		t.Errorf("--json: exit %d, %q (%v)", code, out, err)
	}

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown runtime", []string{"--runtime", "c"}, 125, "no session kernel"},
		{"missing file", []string{"--file", filepath.Join(dir, "nope")}, 2, "nope"},
		{"bad env", []string{"--env", "NOEQUALS"}, 2, "KEY=VALUE"},
		{"bad limit", []string{"--memory", "12XB"}, 2, "12XB"},
		{"arguments", []string{"extra"}, 2, "extra"},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			out, errOut, code := sandboxctl(t, "", append([]string{"session", "new"}, tc.args...)...)
			if code != tc.code || !strings.Contains(errOut, tc.want) || out != "" {
				t.Errorf("exit %d stdout %q stderr %q; want exit %d and %q", code, out, errOut, tc.code, tc.want)
			}
		})
	}
}

func TestSessionExec(t *testing.T) {
	srv := fakeDaemon(t)
	img := pngOf(t, 64, 48)
	raw, _ := base64.StdEncoding.DecodeString(img)
	size := humanBytes(int64(len(raw)))
	// The fake kernel: each code names what the cell does.
	srv.Exec = func(_ string, req run.CellRequest, emit func(wire.CellEvent)) (*run.CellResult, *wire.ErrorDetail) {
		tb := &run.CellError{Name: "KeyboardInterrupt", Traceback: "Traceback (most recent call last):\nKeyboardInterrupt\n"}
		switch req.Code {
		case "x + 1":
			emit(wire.CellEvent{Type: "stdout", Data: "out\n"})
			emit(wire.CellEvent{Type: "stderr", Data: "err\n"})
			return &run.CellResult{Status: run.StatusOK, Result: run.MIMEBundle{"text/plain": "2"}}, nil
		case "x = 1":
			return &run.CellResult{Status: run.StatusOK}, nil
		case "1/0":
			return &run.CellResult{Status: run.StatusError, Error: &run.CellError{Name: "ZeroDivisionError", Value: "division by zero",
				Traceback: "Traceback (most recent call last):\n  File \"<cell-1>\", line 1\nZeroDivisionError: division by zero\n"}}, nil
		case "sleep":
			return &run.CellResult{Status: run.StatusTimeout, Reason: "the cell's timeout of 1s was reached and it was interrupted; the session goes on", Error: tb}, nil
		case "spin":
			return &run.CellResult{Status: run.StatusCPULimit, Reason: "cpu limit; the session goes on", Error: tb}, nil
		case "print forever":
			return &run.CellResult{Status: run.StatusOutputLimit, Reason: "output limit; the session goes on", Error: tb}, nil
		case "allocate":
			return &run.CellResult{Status: run.StatusMemoryLimit, Reason: "memory limit; the session is dead", State: run.SessionDead}, nil
		case "os._exit(3)":
			return &run.CellResult{Status: run.StatusExited, Reason: "the kernel exited with code 3; the session is dead", State: run.SessionDead}, nil
		case "plot":
			emit(wire.CellEvent{Type: "display", Display: run.MIMEBundle{"text/plain": "<Figure>", "image/png": img}})
			emit(wire.CellEvent{Type: "display", Display: run.MIMEBundle{"text/plain": "a table", "text/html": "<table>"}})
			return &run.CellResult{Status: run.StatusOK, Result: run.MIMEBundle{"text/plain": "<PIL.Image>", "image/png": img}}, nil
		case "timeout?":
			return &run.CellResult{Status: run.StatusOK, Result: run.MIMEBundle{"text/plain": req.Timeout.String()}}, nil
		}
		return &run.CellResult{Status: run.StatusOK, Result: run.MIMEBundle{"text/plain": repr(req.Code)}}, nil
	}
	codeFile := filepath.Join(t.TempDir(), "cell.py")
	if err := os.WriteFile(codeFile, []byte("from file"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name           string
		args           []string
		stdin          string
		stdout, stderr string
		code           int
	}{
		{"value", []string{"ID", "x + 1"}, "", "out\n2\n", "err\n", 0},
		{"no value", []string{"ID", "x = 1"}, "", "", "", 0},
		{"exception", []string{"ID", "1/0"}, "", "", "Traceback (most recent call last):\n  File \"<cell-1>\", line 1\nZeroDivisionError: division by zero\n", 1},
		{"timeout", []string{"ID", "sleep"}, "", "", "Traceback (most recent call last):\nKeyboardInterrupt\nsandboxctl: the cell's timeout of 1s was reached and it was interrupted; the session goes on\n", 124},
		{"cpu limit", []string{"ID", "spin"}, "", "", "Traceback (most recent call last):\nKeyboardInterrupt\nsandboxctl: cpu limit; the session goes on\n", 123},
		{"output limit", []string{"ID", "print forever"}, "", "", "Traceback (most recent call last):\nKeyboardInterrupt\nsandboxctl: output limit; the session goes on\n", 121},
		{"memory limit", []string{"ID", "allocate"}, "", "", "sandboxctl: memory limit; the session is dead\n", 122},
		{"kernel exited", []string{"ID", "os._exit(3)"}, "", "", "sandboxctl: the kernel exited with code 3; the session is dead\n", 125},
		{"images", []string{"ID", "plot"}, "", "[image/png 64x48, " + size + "]\na table\n[image/png 64x48, " + size + "]\n", "", 0},
		{"-f", []string{"ID", "-f", codeFile}, "", "'from file'\n", "", 0},
		{"-", []string{"ID", "-"}, "from\nstdin\n", "'from\\nstdin\\n'\n", "", 0},
		{"stdin by default", []string{"ID"}, "piped", "'piped'\n", "", 0},
		{"--timeout", []string{"ID", "--timeout", "1.5s", "timeout?"}, "", "1.5s\n", "", 0},
		{"unknown session", []string{"nope", "1"}, "", "", "sandboxctl: sandboxd answered 404 not_found: no session \"nope\" (it may have expired)\n", 125},
		{"CODE and -f", []string{"ID", "-f", codeFile, "1"}, "", "", "sandboxctl: give CODE or -f FILE, not both\n", 2},
		{"missing -f file", []string{"ID", "-f", codeFile + ".nope"}, "", "", "", 2},
		{"no id", nil, "", "", "", 2},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			// Each case has a session of its own: some kill it.
			id := srv.Add(run.SessionSpec{})
			args := []string{"session", "exec"}
			for _, a := range tc.args {
				if a == "ID" {
					a = id
				}
				args = append(args, a)
			}
			out, errOut, code := sandboxctl(t, tc.stdin, args...)
			if code != tc.code || out != tc.stdout || (tc.stderr != "" || code == 0) && errOut != tc.stderr {
				t.Errorf("exit %d\nstdout %q\nstderr %q\nwant exit %d\nstdout %q\nstderr %q", code, out, errOut, tc.code, tc.stdout, tc.stderr)
			}
		})
	}

	id := srv.Add(run.SessionSpec{})
	t.Run("save images", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "imgs")
		out, errOut, code := sandboxctl(t, "", "session", "exec", "--save-images", dir, id, "plot")
		s, _ := srv.Session(id)
		n := len(s.Cells)
		want := []string{filepath.Join(dir, "cell-"+itoa(n)+"-1.png"), filepath.Join(dir, "cell-"+itoa(n)+"-2.png")}
		if code != 0 || out != "a table\n[image/png 64x48, "+size+": "+want[0]+"]\n[image/png 64x48, "+size+": "+want[1]+"]\n" {
			t.Errorf("exit %d stdout %q stderr %q", code, out, errOut)
		}
		for _, name := range want {
			if b, err := os.ReadFile(name); err != nil || !bytes.Equal(b, raw) {
				t.Errorf("%s: %v", name, err)
			}
		}
	})

	t.Run("json", func(t *testing.T) {
		out, _, code := sandboxctl(t, "", "session", "exec", "--json", id, "1/0")
		var res run.CellResult
		if err := json.Unmarshal([]byte(out), &res); err != nil || code != 1 || res.Status != run.StatusError || res.Error.Name != "ZeroDivisionError" {
			t.Errorf("exit %d, %q (%v)", code, out, err)
		}
		out, _, code = sandboxctl(t, "", "session", "exec", "--json", id, "x + 1")
		if err := json.Unmarshal([]byte(out), &res); err != nil || code != 0 || string(res.Stdout) != "out\n" {
			t.Errorf("exit %d, %q (%v): the output is in the JSON only", code, out, err)
		}
	})

	t.Run("dead session", func(t *testing.T) {
		id := srv.Add(run.SessionSpec{})
		srv.Kill(id, "the memory limit was reached")
		_, errOut, code := sandboxctl(t, "", "session", "exec", id, "1")
		if code != 125 || !strings.Contains(errOut, "409") || !strings.Contains(errOut, "the memory limit was reached") {
			t.Errorf("exit %d stderr %q", code, errOut)
		}
	})
}

func repr(s string) string {
	b, _ := json.Marshal(s)
	return "'" + strings.ReplaceAll(strings.Trim(string(b), `"`), "'", `\'`) + "'"
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestSessionCp(t *testing.T) {
	srv := fakeDaemon(t)
	id := srv.Add(run.SessionSpec{})
	dir := t.TempDir()
	local := filepath.Join(dir, "in.txt")
	if err := os.WriteFile(local, []byte("local bytes"), 0o600); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		args   []string
		stdin  string
		stdout string
		code   int
	}{
		{[]string{local, id + ":data/copy.txt"}, "", "", 0},
		{[]string{local, id + ":data/"}, "", "", 0},
		{[]string{local, id + ":"}, "", "", 0},
		{[]string{"-", id + ":from-stdin.txt"}, "piped bytes", "", 0},
		{[]string{id + ":data/copy.txt", filepath.Join(dir, "out.txt")}, "", "", 0},
		{[]string{id + ":data/in.txt", dir + "/"}, "", "", 0},
		{[]string{id + ":from-stdin.txt", "-"}, "", "piped bytes", 0},
		// Mistakes.
		{[]string{local, filepath.Join(dir, "x")}, "", "", 2},
		{[]string{id + ":a", id + ":b"}, "", "", 2},
		{[]string{"-", id + ":"}, "", "", 2},
		{[]string{dir, id + ":d"}, "", "", 2},
		{[]string{filepath.Join(dir, "missing"), id + ":d"}, "", "", 2},
		{[]string{local, id + ":/etc/passwd"}, "", "", 125},
		{[]string{id + ":no-such-file", filepath.Join(dir, "never")}, "", "", 125},
		{[]string{"nope:x", filepath.Join(dir, "never")}, "", "", 125},
	}
	for _, st := range steps {
		out, errOut, code := sandboxctl(t, st.stdin, append([]string{"session", "cp"}, st.args...)...)
		if code != st.code || out != st.stdout {
			t.Errorf("cp %q: exit %d stdout %q stderr %q; want exit %d stdout %q", st.args, code, out, errOut, st.code, st.stdout)
		}
	}
	s, _ := srv.Session(id)
	for name, want := range map[string]string{"data/copy.txt": "local bytes", "data/in.txt": "local bytes", "in.txt": "local bytes", "from-stdin.txt": "piped bytes"} {
		if string(s.Files[name]) != want {
			t.Errorf("the session's %s = %q, want %q", name, s.Files[name], want)
		}
	}
	for name, want := range map[string]string{"out.txt": "local bytes", "in.txt": "local bytes"} {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(b) != want {
			t.Errorf("local %s = %q (%v), want %q", name, b, err, want)
		}
	}
	// A failed download leaves nothing behind.
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "in.txt out.txt" {
		t.Errorf("local files after the copies: %q", names)
	}
}

func TestSessionLsFilesRm(t *testing.T) {
	srv := fakeDaemon(t)
	a := srv.Add(run.SessionSpec{Files: []run.File{{Name: "data/x.csv", Content: []byte("12345")}, {Name: "main.py", Content: []byte("1")}}})
	b := srv.Add(run.SessionSpec{})
	srv.Kill(b, "killed")

	out, errOut, code := sandboxctl(t, "", "session", "ls")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], "ID ") || !strings.HasPrefix(lines[1], a+" ") || !strings.Contains(lines[1], " idle ") ||
		!strings.HasPrefix(lines[2], b+" ") || !strings.Contains(lines[2], " dead ") {
		t.Errorf("ls: exit %d stdout:\n%s\nstderr %s", code, out, errOut)
	}
	out, _, code = sandboxctl(t, "", "session", "ls", "--json")
	var list wire.SessionList
	if err := json.Unmarshal([]byte(out), &list); err != nil || code != 0 || len(list.Sessions) != 2 {
		t.Errorf("ls --json: exit %d %q (%v)", code, out, err)
	}

	out, _, code = sandboxctl(t, "", "session", "files", a)
	lines = strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], "drwxr-xr-x") || !strings.HasSuffix(lines[0], " data/") ||
		!strings.HasPrefix(lines[1], "-rw-r--r--  5  ") || !strings.HasSuffix(lines[1], " data/x.csv") ||
		!strings.HasPrefix(lines[2], "-rw-r--r--  1  ") || !strings.HasSuffix(lines[2], " main.py") {
		t.Errorf("files: exit %d stdout:\n%s", code, out)
	}
	out, _, code = sandboxctl(t, "", "session", "files", a, "data")
	if fields := strings.Fields(out); code != 0 || len(fields) != 5 || fields[1] != "5" || fields[4] != "data/x.csv" {
		t.Errorf("files DIR: exit %d stdout %q", code, out)
	}
	out, _, code = sandboxctl(t, "", "session", "files", "--json", a)
	var fl wire.FileList
	if err := json.Unmarshal([]byte(out), &fl); err != nil || code != 0 || len(fl.Files) != 3 {
		t.Errorf("files --json: exit %d %q (%v)", code, out, err)
	}

	out, _, code = sandboxctl(t, "", "session", "info", a)
	var info run.SessionInfo
	if err := json.Unmarshal([]byte(out), &info); err != nil || code != 0 || info.ID != a {
		t.Errorf("info: exit %d %q (%v)", code, out, err)
	}

	_, errOut, code = sandboxctl(t, "", "session", "rm", a, "nope", b)
	if code != 125 || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "rm nope:") {
		t.Errorf("rm with an unknown id: exit %d stderr %q", code, errOut)
	}
	if _, ok := srv.Session(a); ok {
		t.Error("rm left", a)
	}
	if _, ok := srv.Session(b); ok {
		t.Error("rm left", b, "after an error on another id")
	}
}

// TestSessionServerFlags: --server and --token win over the environment,
// and the daemon's 401 is an error naming it.
func TestSessionServerFlags(t *testing.T) {
	srv := fakeDaemon(t)
	t.Setenv("SANDBOXD_SERVER", "http://127.0.0.1:1")
	t.Setenv("SANDBOXD_TOKEN", "wrong")
	_, errOut, code := sandboxctl(t, "", "session", "ls")
	if code != 125 || errOut == "" {
		t.Errorf("with an unreachable $SANDBOXD_SERVER: exit %d stderr %q", code, errOut)
	}
	_, errOut, code = sandboxctl(t, "", "session", "ls", "--server", srv.URL)
	if code != 125 || !strings.Contains(errOut, "401") {
		t.Errorf("with a wrong token: exit %d stderr %q", code, errOut)
	}
	_, errOut, code = sandboxctl(t, "", "session", "--server", srv.URL, "ls", "--token", "secret")
	if code != 0 {
		t.Errorf("with --server and --token: exit %d stderr %q", code, errOut)
	}
}

// TestSessionHelp: every command says what it does in its help.
func TestSessionHelp(t *testing.T) {
	for _, args := range [][]string{
		{"session", "--help"}, {"session", "new", "--help"}, {"session", "exec", "--help"}, {"session", "cp", "--help"},
		{"session", "ls", "--help"}, {"session", "files", "--help"}, {"session", "rm", "--help"}, {"session", "info", "--help"}, {"repl", "--help"},
	} {
		out, _, code := sandboxctl(t, "", args...)
		if code != 0 || len(out) < 200 {
			t.Errorf("%q: exit %d, %d bytes of help", args, code, len(out))
		}
	}
	out, _, _ := sandboxctl(t, "", "session", "exec", "--help")
	for _, want := range []string{"124", "123", "122", "121", "125", "--save-images", "cell-N-K.png"} {
		if !strings.Contains(out, want) {
			t.Errorf("session exec --help does not mention %q", want)
		}
	}
	if _, errOut, code := sandboxctl(t, "", "session"); code != 2 || errOut == "" {
		t.Errorf("session alone: exit %d", code)
	}
}

// A lockedBuffer is a bytes.Buffer for a writer and a reader at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
