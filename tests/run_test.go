package tests

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sandboxd/sandboxd/internal/testenv"
)

func TestHelloWorld(t *testing.T) {
	requireSandbox(t)
	r, code := runPy(t, `print("hello, sandbox")`)
	wantStatus(t, r, code, "ok", 0)
	if got, want := string(r.Stdout), "hello, sandbox\n"; got != want {
		t.Errorf("stdout = %q, want %q", got, want)
	}
	if len(r.Stderr) != 0 {
		t.Errorf("stderr = %q, want empty", r.Stderr)
	}
	if r.ExitCode != 0 || r.Signal != 0 {
		t.Errorf("exit_code = %d, signal = %d; want 0, 0", r.ExitCode, r.Signal)
	}
	if r.ID == "" {
		t.Error("the result has no id")
	}
	if r.Runtime != "python" {
		t.Errorf("runtime = %q, want python", r.Runtime)
	}
	if r.WallTime <= 0 || r.CPUTime <= 0 || r.PeakMemory <= 0 {
		t.Errorf("figures not filled: wall=%s cpu=%s peak=%d", r.WallTime, r.CPUTime, r.PeakMemory)
	}
	iso := r.Isolation
	if iso.Backend != "process" || !iso.Seccomp || !iso.NoNewPrivs || iso.UID != 1000 || iso.Network != "none" || iso.Cgroup == "" {
		t.Errorf("isolation = %+v: want backend process, seccomp, no_new_privs, uid 1000, network none, a cgroup", iso)
	}
	for _, ns := range []string{"user", "pid", "mount", "network", "ipc", "uts", "cgroup"} {
		if !slices.Contains(iso.Namespaces, ns) {
			t.Errorf("isolation.namespaces = %v: missing %q", iso.Namespaces, ns)
		}
	}
}

func TestStdinPassthrough(t *testing.T) {
	requireSandbox(t)
	// Every byte value, then text without a final newline: nothing may be
	// translated or lost on the way in.
	var in bytes.Buffer
	for i := 0; i < 4; i++ {
		for b := 0; b < 256; b++ {
			in.WriteByte(byte(b))
		}
	}
	in.WriteString("one\ntwo\nno newline at the end")
	sum := sha256.Sum256(in.Bytes())
	r, code := runJSON(t, runSpec{
		code: `import sys, hashlib
data = sys.stdin.buffer.read()
print(len(data), hashlib.sha256(data).hexdigest())
`,
		stdin: in.Bytes(),
	})
	wantStatus(t, r, code, "ok", 0)
	want := fmt.Sprintf("%d %s\n", in.Len(), hex.EncodeToString(sum[:]))
	if string(r.Stdout) != want {
		t.Errorf("the program read stdin as %q, want %q (length and sha256 of what the test piped in)", r.Stdout, want)
	}
}

func TestExitCodePropagates(t *testing.T) {
	requireSandbox(t)
	for _, tc := range []struct {
		code   int
		status string
	}{
		{0, "ok"}, {1, "exited"}, {3, "exited"}, {255, "exited"},
	} {
		t.Run(fmt.Sprint(tc.code), func(t *testing.T) {
			r, code := runPy(t, fmt.Sprintf("import sys\nsys.exit(%d)\n", tc.code))
			wantStatus(t, r, code, tc.status, tc.code)
			if r.ExitCode != tc.code {
				t.Errorf("exit_code = %d, want %d", r.ExitCode, tc.code)
			}
			if r.Signal != 0 {
				t.Errorf("signal = %d, want 0", r.Signal)
			}
		})
	}
}

func TestKilledBySignal(t *testing.T) {
	requireSandbox(t)
	for _, tc := range []struct {
		name   string
		code   string
		signal int
		sig    string
	}{
		{"SIGSEGV", "import ctypes\nctypes.string_at(0)\n", 11, "SIGSEGV"},
		{"SIGABRT", "import os\nos.abort()\n", 6, "SIGABRT"},
		// A program that kills itself is signaled, not a limit hit: the
		// status must not be guessed from the signal alone.
		{"SIGKILL", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n", 9, "SIGKILL"},
		{"SIGTERM", "import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n", 15, "SIGTERM"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, code := runPy(t, tc.code)
			wantStatus(t, r, code, "signaled", 128+tc.signal)
			if r.Signal != tc.signal || r.SignalName != tc.sig {
				t.Errorf("signal = %d (%q), want %d (%q)", r.Signal, r.SignalName, tc.signal, tc.sig)
			}
			if r.ExitCode != -1 {
				t.Errorf("exit_code = %d, want -1 for a program killed by a signal", r.ExitCode)
			}
			for _, f := range r.Files {
				if strings.HasPrefix(f.Name, "core") {
					t.Errorf("the crash left a core dump %q in the workspace (RLIMIT_CORE must be 0)", f.Name)
				}
			}
		})
	}
}

func TestStdoutStderrApart(t *testing.T) {
	requireSandbox(t)
	const n = 2000
	r, code := runPy(t, fmt.Sprintf(`import os
for i in range(%d):
    os.write(1, b"out %%d\n" %% i)
    os.write(2, b"err %%d\n" %% i)
`, n))
	wantStatus(t, r, code, "ok", 0)
	var wantOut, wantErr strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&wantOut, "out %d\n", i)
		fmt.Fprintf(&wantErr, "err %d\n", i)
	}
	if string(r.Stdout) != wantOut.String() {
		t.Errorf("stdout is not exactly the %d stdout lines (%d bytes, want %d); head: %q", n, len(r.Stdout), wantOut.Len(), head(r.Stdout))
	}
	if string(r.Stderr) != wantErr.String() {
		t.Errorf("stderr is not exactly the %d stderr lines (%d bytes, want %d); head: %q", n, len(r.Stderr), wantErr.Len(), head(r.Stderr))
	}
}

func head(b []byte) []byte {
	if len(b) > 200 {
		return b[:200]
	}
	return b
}

// hexStream is the test's deterministic "random" output: hex lines of a
// sha256 chain, cut to n bytes. The program computes the same.
func hexStream(n int) []byte {
	var out bytes.Buffer
	h := sha256.Sum256([]byte("sandboxd"))
	for out.Len() < n {
		out.WriteString(hex.EncodeToString(h[:]))
		out.WriteByte('\n')
		h = sha256.Sum256(h[:])
	}
	return out.Bytes()[:n]
}

const hexStreamPy = `import hashlib, os, sys
n = int(sys.argv[1])
parts, size, h = [], 0, hashlib.sha256(b"sandboxd").digest()
while size < n:
    line = h.hex().encode() + b"\n"
    parts.append(line); size += len(line)
    h = hashlib.sha256(h).digest()
data = b"".join(parts)[:n]
# Uneven chunks, so writes straddle the pipe's buffer.
i, step = 0, 1
while i < len(data):
    i += os.write(1, data[i:i+step])
    step = step * 7 % 9973 + 1
`

func TestLargeOutputByteExact(t *testing.T) {
	requireSandbox(t)
	const n = 200 << 10
	want := hexStream(n)
	r, code := runJSON(t, runSpec{code: hexStreamPy, args: []string{fmt.Sprint(n)}})
	wantStatus(t, r, code, "ok", 0)
	if r.StdoutTruncated {
		t.Errorf("stdout_truncated is set for %d bytes, below the 1 MiB cap", n)
	}
	if len(r.Stdout) != n || sha256.Sum256(r.Stdout) != sha256.Sum256(want) {
		i := 0
		for i < len(r.Stdout) && i < len(want) && r.Stdout[i] == want[i] {
			i++
		}
		t.Errorf("stdout: %d bytes, want %d, first difference at byte %d", len(r.Stdout), n, i)
	}
}

func TestProducedFiles(t *testing.T) {
	requireSandbox(t)
	bin := bytes.Repeat([]byte{0, 1, 2, 0xfe, 0xff, '\n', '\r'}, 1000)
	r, code := runPy(t, `import os
data = bytes([0, 1, 2, 0xfe, 0xff, 10, 13]) * 1000
with open("out.bin", "wb") as f:
    f.write(data)
os.chmod("out.bin", 0o640)
os.makedirs("sub/dir")
with open("sub/dir/note.txt", "w") as f:
    f.write("nested\n")
with open("/tmp/not-collected.txt", "w") as f:
    f.write("tmp is not the workspace\n")
`)
	wantStatus(t, r, code, "ok", 0)
	for _, want := range []struct {
		name    string
		content []byte
		mode    uint32
	}{
		{"out.bin", bin, 0o640},
		{"sub/dir/note.txt", []byte("nested\n"), 0},
	} {
		f := r.file(want.name)
		if f == nil {
			t.Errorf("files[] has no %q; got %v", want.name, fileNames(r))
			continue
		}
		if !bytes.Equal(f.Content, want.content) || f.Size != int64(len(want.content)) {
			t.Errorf("%s: %d bytes (size %d), want %d bytes exactly as written", want.name, len(f.Content), f.Size, len(want.content))
		}
		if want.mode != 0 && f.Mode != want.mode {
			t.Errorf("%s: mode %o, want %o", want.name, f.Mode, want.mode)
		}
	}
	if r.file("main.py") != nil {
		t.Errorf("the unchanged input main.py came back as a produced file")
	}
	for _, f := range r.Files {
		if strings.Contains(f.Name, "not-collected") {
			t.Errorf("a /tmp file came back in files[]: %q", f.Name)
		}
	}
}

func fileNames(r *result) []string {
	var names []string
	for _, f := range r.Files {
		names = append(names, f.Name)
	}
	return names
}

func TestProducedFilesOutDir(t *testing.T) {
	requireSandbox(t)
	dir := t.TempDir()
	script := filepath.Join(t.TempDir(), "write.py")
	if err := os.WriteFile(script, []byte(`with open("result.txt", "w") as f:
    f.write("42\n")
import os
os.makedirs("a/b")
open("a/b/c.txt", "wb").write(b"\x00deep\xff")
`), 0o644); err != nil {
		t.Fatal(err)
	}
	o := sbx(t, invocation{args: []string{"run", "--out", dir, script}})
	if o.code != 0 {
		t.Fatalf("sandboxctl run --out: exit %d, stderr:\n%s", o.code, o.stderr)
	}
	for name, want := range map[string]string{"result.txt": "42\n", "a/b/c.txt": "\x00deep\xff"} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("--out did not write %s: %v", name, err)
			continue
		}
		if string(got) != want {
			t.Errorf("--out %s = %q, want %q", name, got, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "write.py")); err == nil {
		t.Errorf("--out wrote the unchanged input write.py")
	}
}

func TestManyFilesAreCapped(t *testing.T) {
	requireSandbox(t)
	r, code := runPy(t, `
for i in range(500):
    with open("f%03d.txt" % i, "w") as f:
        f.write(str(i))
`)
	wantStatus(t, r, code, "ok", 0)
	if !r.FilesTruncated {
		t.Errorf("500 produced files: files_truncated not set (got %d files)", len(r.Files))
	}
	if len(r.Files) == 0 || len(r.Files) >= 500 {
		t.Errorf("got %d files back for 500 produced: want some, capped", len(r.Files))
	}
}

func TestArgsReachProgramUnchanged(t *testing.T) {
	requireSandbox(t)
	args := []string{
		"with space", "it's", `"double"`, "$(id)", "`uname`", "a;b", "a && b", "x|y",
		"--flag", "-x", "--json", "--timeout", "1ms", "", "*", "$HOME", `back\slash`, "tab\there",
		"new\nline", "ünïcødé ✓", "'", "\"",
	}
	r, code := runJSON(t, runSpec{
		code: "import sys, json\nprint(json.dumps(sys.argv[1:]))\n",
		args: args,
	})
	wantStatus(t, r, code, "ok", 0)
	var got []string
	if err := json.Unmarshal(r.Stdout, &got); err != nil {
		t.Fatalf("program output is not the JSON of its argv: %v\n%s", err, r.Stdout)
	}
	if !slices.Equal(got, args) {
		t.Errorf("sys.argv[1:] = %q\nwant           %q", got, args)
	}
}

func TestEnvironment(t *testing.T) {
	requireSandbox(t)
	if os.Getenv(hostSecretVar) != hostSecret {
		t.Fatalf("TestMain did not set %s in the test's environment", hostSecretVar)
	}
	r, code := runPy(t, `import os, json
out = {"environ": dict(os.environ), "proc": {}}
for pid in [d for d in os.listdir("/proc") if d.isdigit()]:
    try:
        out["proc"][pid] = open("/proc/%s/environ" % pid, "rb").read().decode("utf-8", "replace")
    except OSError as e:
        out["proc"][pid] = "unreadable: " + e.strerror
print(json.dumps(out))
`, "--env", "SBX_GIVEN=hello world", "--env", "SBX_EQ=a=b=c", "--env", "HOME=/elsewhere")
	wantStatus(t, r, code, "ok", 0)
	var got struct {
		Environ map[string]string `json:"environ"`
		Proc    map[string]string `json:"proc"`
	}
	if err := json.Unmarshal(r.Stdout, &got); err != nil {
		t.Fatalf("bad program output: %v\n%s", err, r.Stdout)
	}
	for k, want := range map[string]string{"SBX_GIVEN": "hello world", "SBX_EQ": "a=b=c", "HOME": "/elsewhere"} {
		if got.Environ[k] != want {
			t.Errorf("--env %s=%s: the program sees %s=%q", k, want, k, got.Environ[k])
		}
	}
	if _, ok := got.Environ["PATH"]; !ok {
		t.Errorf("no PATH in the program's environment: %v", got.Environ)
	}
	allowed := map[string]bool{
		"PATH": true, "HOME": true, "USER": true, "LOGNAME": true, "LANG": true, "TMPDIR": true,
		"PYTHONUNBUFFERED": true, "PYTHONDONTWRITEBYTECODE": true, "SBX_GIVEN": true, "SBX_EQ": true,
		// Thread pools sized to the run's CPUs (executor.ThreadEnv).
		"OMP_NUM_THREADS": true, "OPENBLAS_NUM_THREADS": true, "MKL_NUM_THREADS": true, "NUMEXPR_NUM_THREADS": true,
	}
	if got.Environ["OPENBLAS_NUM_THREADS"] != "1" {
		t.Errorf("OPENBLAS_NUM_THREADS = %q, want 1 for the default of one CPU", got.Environ["OPENBLAS_NUM_THREADS"])
	}
	for k, v := range got.Environ {
		if strings.Contains(k+"="+v, hostSecret) {
			t.Errorf("the host's %s leaked into the program's environment as %s=%s", hostSecretVar, k, v)
		}
		if !allowed[k] {
			t.Errorf("unexpected variable in the sandbox's clean environment: %s=%q", k, v)
		}
	}
	if _, ok := got.Proc["1"]; !ok {
		t.Errorf("/proc/1 not listed in the sandbox's /proc: %v", got.Proc)
	}
	for pid, env := range got.Proc {
		if strings.Contains(env, hostSecret) || strings.Contains(env, hostSecretVar) {
			t.Errorf("/proc/%s/environ in the sandbox shows the host's environment: %q", pid, env)
		}
	}
}

func TestCompileAndRunC(t *testing.T) {
	requireSandbox(t)
	requireFile(t, "/usr/bin/gcc")
	src, err := os.ReadFile("../examples/hello.c")
	if err != nil {
		t.Fatal(err)
	}
	r, code := runJSON(t, runSpec{name: "hello.c", code: string(src)})
	wantStatus(t, r, code, "ok", 0)
	if got, want := string(r.Stdout), "hello from the sandbox, in C\n"; got != want {
		t.Errorf("stdout = %q, want %q", got, want)
	}
	if r.Runtime != "c" {
		t.Errorf("runtime = %q, want c", r.Runtime)
	}
	if r.Compile == nil || r.Compile.Status != "ok" {
		t.Errorf("compile result = %+v, want one with status ok", r.Compile)
	}
	for _, f := range r.Files {
		t.Errorf("the compiled binary or another build file came back as a produced file: %q", f.Name)
	}
}

func TestCompileErrorC(t *testing.T) {
	requireSandbox(t)
	requireFile(t, "/usr/bin/gcc")
	r, code := runJSON(t, runSpec{name: "broken.c", code: "int main(void) { return undefined_variable_xyz; }\n"})
	if code == 0 {
		t.Fatalf("a C compile error gave exit code 0\n%s", r)
	}
	if r.Status != "exited" {
		t.Errorf("status = %q, want exited for a failed compile", r.Status)
	}
	if r.Compile == nil {
		t.Fatalf("no compile result for a failed compile\n%s", r)
	}
	if r.Compile.Status != "exited" || r.Compile.ExitCode == 0 {
		t.Errorf("compile status = %q exit %d, want exited non-zero", r.Compile.Status, r.Compile.ExitCode)
	}
	if !bytes.Contains(r.Compile.Stderr, []byte("undefined_variable_xyz")) {
		t.Errorf("the compiler's error does not name the undefined identifier; compile stderr:\n%s", r.Compile.Stderr)
	}
	if len(r.Stdout) != 0 {
		t.Errorf("a program that did not compile produced stdout %q", r.Stdout)
	}
}

func TestNodeRuns(t *testing.T) {
	requireSandbox(t)
	requireFile(t, "/usr/bin/node")
	src, err := os.ReadFile("../examples/hello.js")
	if err != nil {
		t.Fatal(err)
	}
	r, code := runJSON(t, runSpec{name: "hello.js", code: string(src)})
	wantStatus(t, r, code, "ok", 0)
	if !strings.HasPrefix(string(r.Stdout), "hello from the sandbox, node ") {
		t.Errorf("stdout = %q, want the node greeting", r.Stdout)
	}
	if r.Runtime != "javascript" {
		t.Errorf("runtime = %q, want javascript", r.Runtime)
	}
}

func TestTrailingOutputArrives(t *testing.T) {
	requireSandbox(t)
	// The program exits (without flushing or closing anything) while most
	// of its output is still in the pipe: all of it must arrive.
	for _, tc := range []struct {
		name, code string
	}{
		{"print", "import os\nprint('x' * 100000, end='')\nos._exit(0)\n"},
		{"os.write", "import os\nos.write(1, b'x' * 100000)\nos._exit(0)\n"},
		{"stderr", "import os, sys\nsys.stderr.write('x' * 100000)\nos._exit(0)\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, code := runPy(t, tc.code)
			wantStatus(t, r, code, "ok", 0)
			got := r.Stdout
			if tc.name == "stderr" {
				got = r.Stderr
			}
			if len(got) != 100000 || strings.Trim(string(got), "x") != "" {
				t.Errorf("got %d bytes of output, want exactly 100000 'x'", len(got))
			}
		})
	}
}

func requireFile(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		testenv.MissingFile(t, path)
	}
}

// TestOutDirDoesNotFollowSymlinks: --out writes under DIR only, even where
// DIR already holds symlinks leading out of it.
func TestOutDirDoesNotFollowSymlinks(t *testing.T) {
	requireSandbox(t)
	out, victim := t.TempDir(), t.TempDir()
	if err := os.Symlink(filepath.Join(victim, "file.txt"), filepath.Join(out, "result.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(out, "sub")); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(t.TempDir(), "w.py")
	if err := os.WriteFile(script, []byte(`import os
open("result.txt", "w").write("through the link\n")
os.makedirs("sub")
open("sub/x.txt", "w").write("through the dir link\n")
`), 0o644); err != nil {
		t.Fatal(err)
	}
	o := sbx(t, invocation{args: []string{"run", "--out", out, script}})
	t.Logf("exit %d, stderr %q", o.code, o.stderr)
	ents, _ := os.ReadDir(victim)
	for _, e := range ents {
		t.Errorf("--out wrote %s outside its directory, through a symlink", filepath.Join(victim, e.Name()))
	}
}

// TestChangedInputComesBack: an input the program changed is a produced
// file; an unchanged one is not.
func TestChangedInputComesBack(t *testing.T) {
	requireSandbox(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data.txt")
	keep := filepath.Join(dir, "keep.txt")
	for _, p := range []string{data, keep} {
		if err := os.WriteFile(p, []byte("original\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r, code := runJSON(t, runSpec{code: "open('data.txt', 'a').write('appended\\n')\n", flags: []string{"--file", data, "--file", keep}})
	wantStatus(t, r, code, "ok", 0)
	if f := r.file("data.txt"); f == nil || string(f.Content) != "original\nappended\n" {
		t.Errorf("the changed input data.txt did not come back with its new content; files: %v", fileNames(r))
	}
	if r.file("keep.txt") != nil {
		t.Errorf("the unchanged input keep.txt came back as a produced file")
	}
}
