package tests

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The end-to-end tests of `sandboxctl session ...` and `sandboxctl repl`:
// the real binary against the real daemon (TestSessionCLI*, TestReplDaemon)
// and the REPL's in-process session (TestReplLocal*).

// replInput is the REPL's example: a statement, a block ended by a blank
// line, and an expression whose value is printed.
const replInput = "x = 5\ndef f(a):\n    return a * 2\n\nf(x)\n"

// sessionCLI runs `sandboxctl session ARGS --server URL --token TOKEN`.
func sessionCLI(t *testing.T, d *daemon, stdin []byte, args ...string) outcome {
	t.Helper()
	full := append([]string{"session"}, args...)
	full = append(full, "--server", d.url, "--token", d.token)
	return sbx(t, invocation{args: full, stdin: stdin, timeout: 60 * time.Second})
}

// wantOutcome fails the test unless o exited code with exactly stdout (and
// stderr containing each of stderr).
func wantOutcome(t *testing.T, what string, o outcome, code int, stdout string, stderr ...string) {
	t.Helper()
	ok := o.code == code && string(o.stdout) == stdout
	for _, s := range stderr {
		ok = ok && strings.Contains(string(o.stderr), s)
	}
	if !ok {
		t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit %d, stdout %q, stderr with %q", what, o.code, o.stdout, tail(o.stderr), code, stdout, stderr)
	}
}

// TestSessionCLI goes through a session's life with sandboxctl against the
// daemon: new, cells that share state, files in and out, listings, a limit
// the session survives, and rm.
func TestSessionCLI(t *testing.T) {
	requireDaemon(t)
	d := startDaemon(t, daemonConfig{token: "tok-" + randomHex(16)})
	dir := t.TempDir()
	data := filepath.Join(dir, "data.csv")
	if err := os.WriteFile(data, []byte("a,b\n1,2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	o := sessionCLI(t, d, nil, "new", "--memory", "512MiB", "--timeout", "30s", "--idle", "10m", "--file", data+":in/data.csv")
	id := strings.TrimSpace(string(o.stdout))
	if o.code != 0 || id == "" || strings.ContainsAny(id, " \n") {
		t.Fatalf("session new: exit %d, stdout %q, stderr %s", o.code, o.stdout, o.stderr)
	}

	wantOutcome(t, "x = 1", sessionCLI(t, d, nil, "exec", id, "x = 1"), 0, "")
	wantOutcome(t, "x + 1", sessionCLI(t, d, nil, "exec", id, "x + 1"), 0, "2\n")
	wantOutcome(t, "print and a value", sessionCLI(t, d, nil, "exec", id, "print('out')\nx + 41"), 0, "out\n42\n")
	wantOutcome(t, "code from stdin", sessionCLI(t, d, []byte("print(open('in/data.csv').read(), end='')\n"), "exec", id, "-"), 0, "a,b\n1,2\n")
	wantOutcome(t, "an exception", sessionCLI(t, d, nil, "exec", id, "1/0"), 1, "", "Traceback", "ZeroDivisionError: division by zero")

	// Files in and out, by streaming copies.
	big := make([]byte, 3<<20)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	bigPath := filepath.Join(dir, "big.bin")
	if err := os.WriteFile(bigPath, big, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(big)
	wantOutcome(t, "cp in", sessionCLI(t, d, nil, "cp", bigPath, id+":up/"), 0, "")
	wantOutcome(t, "cp in from stdin", sessionCLI(t, d, []byte("from stdin"), "cp", "-", id+":up/stdin.txt"), 0, "")
	wantOutcome(t, "the cell sees the copy", sessionCLI(t, d, nil, "exec", id, "import hashlib\nhashlib.sha256(open('up/big.bin', 'rb').read()).hexdigest()"),
		0, "'"+hex.EncodeToString(sum[:])+"'\n")
	wantOutcome(t, "a cell writes a file", sessionCLI(t, d, nil, "exec", id, "open('made.txt', 'w').write('made in a cell')"), 0, "14\n")
	wantOutcome(t, "cp out to stdout", sessionCLI(t, d, nil, "cp", id+":made.txt", "-"), 0, "made in a cell")
	out := filepath.Join(dir, "back.bin")
	wantOutcome(t, "cp out", sessionCLI(t, d, nil, "cp", id+":up/big.bin", out), 0, "")
	if b, err := os.ReadFile(out); err != nil || !bytes.Equal(b, big) {
		t.Errorf("the file copied out differs from the one copied in (%v)", err)
	}
	wantOutcome(t, "cp out of a missing file", sessionCLI(t, d, nil, "cp", id+":nope.txt", filepath.Join(dir, "nope.txt")), 125, "", "404")
	if _, err := os.Stat(filepath.Join(dir, "nope.txt")); err == nil {
		t.Errorf("a failed copy left a local file")
	}

	o = sessionCLI(t, d, nil, "files", id)
	if o.code != 0 || !bytes.Contains(o.stdout, []byte(" in/\n")) || !bytes.Contains(o.stdout, []byte(" up/\n")) || !bytes.Contains(o.stdout, []byte(" made.txt\n")) {
		t.Errorf("files: exit %d, stdout:\n%s\nstderr %s", o.code, o.stdout, o.stderr)
	}
	o = sessionCLI(t, d, nil, "files", id, "up")
	if o.code != 0 || !bytes.Contains(o.stdout, []byte(" 3145728  ")) || !bytes.Contains(o.stdout, []byte(" up/big.bin\n")) || !bytes.Contains(o.stdout, []byte(" up/stdin.txt\n")) || bytes.Contains(o.stdout, []byte("made.txt")) {
		t.Errorf("files up: exit %d, stdout:\n%s\nstderr %s", o.code, o.stdout, o.stderr)
	}
	o = sessionCLI(t, d, nil, "ls")
	if o.code != 0 || !bytes.Contains(o.stdout, []byte(id+"  python")) {
		t.Errorf("ls: exit %d, stdout:\n%s\nstderr %s", o.code, o.stdout, o.stderr)
	}
	o = sessionCLI(t, d, nil, "info", id)
	var info struct {
		ID    string `json:"id"`
		State string `json:"state"`
		Cells int    `json:"cells"`
	}
	if err := json.Unmarshal(o.stdout, &info); o.code != 0 || err != nil || info.ID != id || info.State != "idle" || info.Cells != 7 {
		t.Errorf("info: exit %d, %s (%v)", o.code, o.stdout, err)
	}

	// A cell past its timeout is interrupted; the session goes on.
	wantOutcome(t, "a cell past its timeout", sessionCLI(t, d, nil, "exec", "--timeout", "1s", id, "import time\nprint('sleeping', flush=True)\ntime.sleep(30)"),
		124, "sleeping\n", "KeyboardInterrupt", "timeout")
	wantOutcome(t, "after the timeout", sessionCLI(t, d, nil, "exec", id, "x"), 0, "1\n")

	wantOutcome(t, "rm", sessionCLI(t, d, nil, "rm", id), 0, "")
	wantOutcome(t, "exec after rm", sessionCLI(t, d, nil, "exec", id, "x"), 125, "", "404")
	if o := sessionCLI(t, d, nil, "ls"); bytes.Contains(o.stdout, []byte(id)) {
		t.Errorf("ls after rm still lists the session:\n%s", o.stdout)
	}
}

// TestSessionCLIStreamsAndInterrupts: `session exec` streams a cell's
// output while it runs, and SIGINT to sandboxctl interrupts the cell, not
// the session.
func TestSessionCLIStreamsAndInterrupts(t *testing.T) {
	requireDaemon(t)
	d := startDaemon(t, daemonConfig{token: "tok-" + randomHex(16)})
	o := sessionCLI(t, d, nil, "new", "--timeout", "60s")
	id := strings.TrimSpace(string(o.stdout))
	if o.code != 0 {
		t.Fatalf("session new: exit %d, stderr %s", o.code, o.stderr)
	}
	wantOutcome(t, "x = 1", sessionCLI(t, d, nil, "exec", id, "x = 1"), 0, "")
	cmd := exec.Command(sandboxctl, "session", "exec", "--server", d.url, "--token", d.token, id, "import time\nprint('first', flush=True)\ntime.sleep(60)")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	defer func() {
		_ = cmd.Process.Kill()
		<-done
	}()
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- l
		_, _ = io.Copy(io.Discard, stdout)
		_ = cmd.Wait()
		close(done)
	}()
	select {
	case l := <-line:
		if l != "first\n" {
			t.Fatalf("session exec printed %q first; stderr %s", l, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("no output from session exec within 15s while the cell sleeps: not streamed; stderr %s", stderr.String())
	}
	_ = cmd.Process.Signal(os.Interrupt)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("session exec did not exit within 5s of SIGINT")
	}
	if code := cmd.ProcessState.ExitCode(); code != 130 {
		t.Errorf("session exec exited %d after SIGINT, want 130", code)
	}
	// The next cell waits for the interrupted one, then runs in the same
	// session.
	start := time.Now()
	wantOutcome(t, "after the interrupt", sessionCLI(t, d, nil, "exec", id, "x + 1"), 0, "2\n")
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the cell after the interrupt took %s: the interrupted one ran on", took)
	}
	wantOutcome(t, "rm", sessionCLI(t, d, nil, "rm", id), 0, "")
}

// TestReplDaemon: `sandboxctl repl --server` with piped input prints the
// values like Python's REPL, and removes its session at the end.
func TestReplDaemon(t *testing.T) {
	requireDaemon(t)
	d := startDaemon(t, daemonConfig{token: "tok-" + randomHex(16)})
	o := sbx(t, invocation{args: []string{"repl", "--server", d.url, "--token", d.token}, stdin: []byte(replInput + "1/0\nprint('after')\n"), timeout: 60 * time.Second})
	wantOutcome(t, "repl --server", o, 0, "10\nafter\n", "ZeroDivisionError")
	if o := sessionCLI(t, d, nil, "ls", "--json"); !bytes.Contains(o.stdout, []byte(`"sessions": []`)) {
		t.Errorf("the REPL left its session on the daemon: %s", o.stdout)
	}
}

// repl runs `sandboxctl repl` here, with a token in its sandbox's
// environment to find its processes.
func replLocal(t *testing.T, input string, flags ...string) (outcome, string) {
	t.Helper()
	token, env := tokenFlags()
	args := append(append([]string{"repl"}, env...), flags...)
	return sbx(t, invocation{args: args, stdin: []byte(input), timeout: 60 * time.Second}), token
}

// requireReplGone fails the test if a process of the REPL's sandbox is
// left once sandboxctl has exited.
func requireReplGone(t *testing.T, token string) {
	t.Helper()
	if left := waitGone(5*time.Second, func() []hostProc { return tokenProcs(token) }); len(left) > 0 {
		t.Errorf("processes of the REPL's session are left: %v", left)
	}
}

// TestReplLocal: `sandboxctl repl` without a daemon, on piped input: no
// prompts, values on stdout, tracebacks on stderr, exit() and the session's
// limits.
func TestReplLocal(t *testing.T) {
	requireSandbox(t)
	for _, tc := range []struct {
		name   string
		input  string
		flags  []string
		code   int
		stdout string
		stderr []string
	}{
		{"values", replInput, nil, 0, "10\n", nil},
		{"output and errors", "print('hi')\nimport sys\nprint('to stderr', file=sys.stderr)\n1/0\n[i * i for i in range(4)]\n",
			nil, 0, "hi\n[0, 1, 4, 9]\n", []string{"to stderr\n", "ZeroDivisionError: division by zero"}},
		{"blocks without blank lines", "for i in range(2):\n    print(i)\nif True:\n    y = 3\nelse:\n    y = 4\ny\n", nil, 0, "0\n1\n3\n", nil},
		{"triple-quoted strings and brackets", "s = '''a\n\nb'''\nd = {\n  'k': (1,\n        2),\n}\nlen(s), d\n", nil, 0, "(4, {'k': (1, 2)})\n", nil},
		{"exit()", "x = 1\nexit(7)\nprint('not run')\n", nil, 7, "", nil},
		{"a timeout, and the session goes on", "n = 2\nimport time\ntime.sleep(30)\nn * 21\n", []string{"--timeout", "1s"}, 0, "42\n", []string{"KeyboardInterrupt", "timeout"}},
		{"the memory limit kills the session", "x = 1\nb = b'a' * (400 << 20)\nprint('not run')\n", []string{"--memory", "128MiB"}, 122, "", []string{"memory", "dead"}},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			o, token := replLocal(t, tc.input, tc.flags...)
			wantOutcome(t, "repl", o, tc.code, tc.stdout, tc.stderr...)
			if tc.stderr == nil && len(o.stderr) != 0 {
				t.Errorf("stderr %q, want nothing: no prompts without a terminal", o.stderr)
			}
			requireReplGone(t, token)
		})
	}
}

// TestReplLocalInterrupt: a Ctrl-C at the terminal (SIGINT to sandboxctl's
// whole process group, the sandbox's init included) interrupts the running
// cell and the session goes on. (Ctrl-C at the prompt: TestReplInterrupts
// in internal/cli.)
func TestReplLocalInterrupt(t *testing.T) {
	requireSandbox(t)
	token, env := tokenFlags()
	cmd := exec.Command(sandboxctl, append([]string{"repl"}, env...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		requireReplGone(t, token)
	}()
	lines := make(chan string, 10)
	go func() {
		br := bufio.NewReader(stdout)
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				close(lines)
				return
			}
			lines <- l
		}
	}()
	next := func(what string) string {
		t.Helper()
		select {
		case l := <-lines:
			return l
		case <-time.After(20 * time.Second):
			t.Fatalf("no line from the REPL within 20s (%s); stderr:\n%s", what, stderr.String())
		}
		return ""
	}
	ctrlC := func() {
		if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
	}
	io.WriteString(stdin, "n = 7\nimport time\nprint('sleeping', flush=True); time.sleep(60)\n")
	if l := next("the cell's first line"); l != "sleeping\n" {
		t.Fatalf("first line %q", l)
	}
	ctrlC()
	io.WriteString(stdin, "n + 1\n")
	if l := next("the cell after the interrupt"); l != "8\n" {
		t.Fatalf("after the interrupt: %q; stderr:\n%s", l, stderr.String())
	}
	// The traceback comes on stderr, another pipe than the line above:
	// it may arrive just after it.
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(stderr.String(), "KeyboardInterrupt") && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(stderr.String(), "KeyboardInterrupt") {
		t.Errorf("no KeyboardInterrupt on stderr within 10s: %q", stderr.String())
	}
	io.WriteString(stdin, "n * 6\n")
	stdin.Close()
	if l := next("the last cell"); l != "42\n" {
		t.Fatalf("the last cell: %q; stderr:\n%s", l, stderr.String())
	}
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		t.Fatalf("the REPL did not exit at the end of its input")
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit %d at the end of input; stderr:\n%s", code, stderr.String())
	}
}
