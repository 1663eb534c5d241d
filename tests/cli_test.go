package tests

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// writeScript writes a program for a non-JSON invocation and returns its path.
func writeScript(t *testing.T, name, code string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(code), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCLIHelp(t *testing.T) {
	o := sbx(t, invocation{args: []string{"run", "--help"}})
	if o.code != 0 {
		t.Fatalf("run --help: exit %d, stderr:\n%s", o.code, o.stderr)
	}
	for _, want := range []string{"--timeout", "--cpu-time", "--memory", "--pids", "--output", "--tmpfs", "--file-size", "--open-files", "--cpus", "--runtime", "--env", "--file", "--json", "--out", "124", "125"} {
		if !bytes.Contains(o.stdout, []byte(want)) {
			t.Errorf("run --help does not mention %q", want)
		}
	}
}

// TestCLIStreamsOutput: without --json the program's streams are
// sandboxctl's, byte for byte, with nothing of sandboxctl's own.
func TestCLIStreamsOutput(t *testing.T) {
	requireSandbox(t)
	const n = 200 << 10
	path := writeScript(t, "stream.py", hexStreamPy+"import sys\nsys.stderr.write('to stderr\\n')\n")
	o := sbx(t, invocation{args: []string{"run", path, "204800"}})
	if o.code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", o.code, tail(o.stderr))
	}
	if !bytes.Equal(o.stdout, hexStream(n)) {
		t.Errorf("sandboxctl's stdout (%d bytes) is not the program's %d bytes", len(o.stdout), n)
	}
	if string(o.stderr) != "to stderr\n" {
		t.Errorf("sandboxctl's stderr = %q, want exactly the program's %q", o.stderr, "to stderr\n")
	}
}

func TestCLIStdin(t *testing.T) {
	requireSandbox(t)
	o := sbx(t, invocation{args: []string{"run", "../examples/stdin.py"}, stdin: []byte("one\ntwo\n")})
	if o.code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", o.code, o.stderr)
	}
	if got, want := string(o.stdout), "2 line(s) on stdin\nONE\nTWO\n"; got != want {
		t.Errorf("stdout = %q, want %q", got, want)
	}
	// No stdin at all (the test's stdin is /dev/null): EOF at once, no hang.
	o = sbx(t, invocation{args: []string{"run", "--timeout", "5s", "../examples/stdin.py"}, timeout: 10 * time.Second})
	if o.code != 0 || string(o.stdout) != "0 line(s) on stdin\n" {
		t.Errorf("with an empty stdin: exit %d, stdout %q", o.code, o.stdout)
	}
}

func TestCLIExitCodes(t *testing.T) {
	requireSandbox(t)
	for _, tc := range []struct {
		name   string
		code   string
		flags  []string
		want   int
		stderr string // a part of sandboxctl's own message, if any
	}{
		{"exit 3", "import sys\nsys.exit(3)\n", nil, 3, ""},
		{"SIGSEGV", "import ctypes\nctypes.string_at(0)\n", nil, 139, ""},
		{"timeout", "while True: pass\n", []string{"--timeout", "1s"}, 124, "wall-clock limit of 1s"},
		{"cpu limit", "while True: pass\n", []string{"--cpu-time", "500ms"}, 123, "CPU time limit"},
		{"memory limit", "x = []\nwhile True: x.append(bytes([1]) * (16 << 20))\n", []string{"--memory", "64MiB"}, 122, "memory limit of 64MiB"},
		{"output limit", "import os\nwhile True: os.write(1, b'o' * 65536)\n", []string{"--output", "100KiB"}, 121, "output limit"},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			path := writeScript(t, "main.py", tc.code)
			o := sbx(t, invocation{args: append(append([]string{"run"}, tc.flags...), path)})
			if o.code != tc.want {
				t.Errorf("exit code = %d, want %d; stderr:\n%s", o.code, tc.want, tail(o.stderr))
			}
			if tc.stderr != "" && !bytes.Contains(o.stderr, []byte(tc.stderr)) {
				t.Errorf("stderr does not say %q:\n%s", tc.stderr, tail(o.stderr))
			}
			if tc.name == "output limit" && len(o.stdout) != 100<<10 {
				t.Errorf("streamed %d bytes of stdout, want exactly the 100KiB cap (%d)", len(o.stdout), 100<<10)
			}
		})
	}
}

func TestCLIUnknownRuntime(t *testing.T) {
	requireSandbox(t)
	path := writeScript(t, "main.py", "print(1)\n")
	o := sbx(t, invocation{args: []string{"run", "--runtime", "cobol", path}})
	if o.code != 125 {
		t.Errorf("exit code = %d, want 125 for an unknown runtime", o.code)
	}
	msg := string(o.stderr)
	if !strings.Contains(msg, "cobol") {
		t.Errorf("the message does not name the runtime asked for: %q", msg)
	}
	for _, rt := range []string{"python", "c", "javascript", "bash"} {
		if !strings.Contains(msg, rt) {
			t.Errorf("the message does not list the available runtime %q: %q", rt, msg)
		}
	}
	if len(o.stdout) != 0 {
		t.Errorf("something ran: stdout %q", o.stdout)
	}
	// An unknown extension: the same list.
	path = writeScript(t, "main.cobol", "DISPLAY 'HI'.\n")
	o = sbx(t, invocation{args: []string{"run", path}})
	if o.code != 125 || !strings.Contains(string(o.stderr), "python") {
		t.Errorf("unknown extension: exit %d, stderr %q; want 125 and the list of runtimes", o.code, o.stderr)
	}
}

func TestCLIBadLimits(t *testing.T) {
	requireSandbox(t)
	path := writeScript(t, "main.py", "print('ran')\n")
	for _, tc := range []struct {
		flags []string
		names []string // all must appear in the message
	}{
		{[]string{"--memory", "12XB"}, []string{"--memory", "12XB"}},
		{[]string{"--timeout", "-1s"}, []string{"--timeout", "-1s"}},
		{[]string{"--timeout", "soon"}, []string{"--timeout"}},
		{[]string{"--memory", "100GiB"}, []string{"memory", "ceiling of 4GiB", "the most sandboxctl allows"}},
		{[]string{"--memory", "1MiB"}, []string{"memory", "minimum"}},
		{[]string{"--pids", "1"}, []string{"pids"}},
		{[]string{"--pids", "-5"}, []string{"pids"}},
		{[]string{"--cpus", "0.001"}, []string{"cpus"}},
		{[]string{"--cpus", "100000"}, []string{"cpus"}},
		{[]string{"--tmpfs", "2TiB"}, []string{"tmpfs", "ceiling"}},
		{[]string{"--open-files", "3"}, []string{"open_files"}},
	} {
		t.Run(strings.Join(tc.flags, "="), func(t *testing.T) {
			o := sbx(t, invocation{args: append(append([]string{"run"}, tc.flags...), path)})
			if o.code != 2 && o.code != 125 {
				t.Errorf("exit code = %d, want 2 or 125 for a bad limit", o.code)
			}
			for _, n := range tc.names {
				if !strings.Contains(string(o.stderr), n) {
					t.Errorf("the message does not name %q: %q", n, o.stderr)
				}
			}
			if bytes.Contains(o.stdout, []byte("ran")) {
				t.Errorf("the program ran despite the bad limit")
			}
		})
	}
}

// TestCLIUsageErrors: "2 for a command-line mistake", says run --help.
func TestCLIUsageErrors(t *testing.T) {
	path := writeScript(t, "main.py", "print('ran')\n")
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"no file", []string{"run"}},
		{"unknown flag", []string{"run", "--bogus", path}},
		{"missing file", []string{"run", filepath.Join(t.TempDir(), "nope.py")}},
		{"env without =", []string{"run", "--env", "NOEQUALS", path}},
		{"flag without value", []string{"run", "--timeout"}},
		{"unknown command", []string{"bogus"}},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			o := sbx(t, invocation{args: tc.args})
			if o.code != 2 {
				t.Errorf("sandboxctl %s: exit code = %d, want 2 (a command-line mistake); stderr %q", strings.Join(tc.args, " "), o.code, o.stderr)
			}
			if len(o.stderr) == 0 {
				t.Errorf("no message on stderr")
			}
		})
	}
}

func TestCLIJSONResult(t *testing.T) {
	requireSandbox(t)
	r, code := runPy(t, "print('hi')\n")
	wantStatus(t, r, code, "ok", 0)
	if r.Version == "" {
		t.Errorf("--json result has no runtime version")
	}
	// --json never mixes the program's output into sandboxctl's stdout:
	// the whole stdout is one JSON document (runJSON decoded it strictly).
}

// TestCLISignalCancelsRun: SIGTERM or SIGINT to sandboxctl ends the run,
// and it removes everything of the run before exiting.
func TestCLISignalCancelsRun(t *testing.T) {
	requireSandbox(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			token, flags := tokenFlags()
			path := writeScript(t, "sleep.py", "import time\nprint('sleeping', flush=True)\ntime.sleep(100)\n")
			cmd := exec.Command(sandboxctl, append(append([]string{"run"}, flags...), "--timeout", "60s", path)...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			procs := waitFor(t, 10*time.Second, func() []hostProc { return tokenRunProcs(token) })
			if len(procs) == 0 {
				_ = cmd.Process.Kill()
				<-done
				t.Fatalf("the sandboxed program never showed up on the host; stderr:\n%s", stderr.String())
			}
			id := runIDOfCgroup(procs[0].cgroup)
			_ = cmd.Process.Signal(sig)
			start := time.Now()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				_ = cmd.Process.Kill()
				<-done
				t.Fatalf("sandboxctl did not exit within 5s of %s", sig)
			}
			t.Logf("sandboxctl exited %d after %s: %s", cmd.ProcessState.ExitCode(), time.Since(start).Round(time.Millisecond), strings.TrimSpace(stderr.String()))
			if got, want := cmd.ProcessState.ExitCode(), 128+int(sig); got != want {
				t.Errorf("sandboxctl exited %d after its run was canceled by %s, want %d", got, sig, want)
			}
			requireNoneLeft(t, token)
			requireRunGone(t, id)
		})
	}
}

// waitFor polls list until it returns something or d passes.
func waitFor(t *testing.T, d time.Duration, list func() []hostProc) []hostProc {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if l := list(); len(l) > 0 {
			return l
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// requireRunGone fails the test if anything of run id is left on the host.
func requireRunGone(t *testing.T, id string) {
	t.Helper()
	if id == "" {
		t.Errorf("could not tell the run's id from its cgroup")
		return
	}
	if _, err := os.Lstat(filepath.Join(runsDir, id)); err == nil {
		t.Errorf("run directory %s is left", filepath.Join(runsDir, id))
	}
	for _, cg := range runCgroups(id) {
		t.Errorf("cgroup %s is left", cg)
	}
	for _, m := range workMounts() {
		if runIDOfPath(m) == id {
			t.Errorf("workspace mount %s is left", m)
		}
	}
	for _, p := range runProcs(id) {
		t.Errorf("process of the run is left: %s", p)
	}
}

// runProcs lists the processes in run id's cgroups.
func runProcs(id string) []hostProc {
	var out []hostProc
	for _, pid := range allPids() {
		if p, ok := readProc(pid); ok && runIDOfCgroup(p.cgroup) == id {
			out = append(out, p)
		}
	}
	return out
}

// TestCLIStreamsLive: without --json, output reaches sandboxctl's stdout
// while the program still runs, not when it ends.
func TestCLIStreamsLive(t *testing.T) {
	requireSandbox(t)
	path := writeScript(t, "live.py", "import time\nprint('first', flush=True)\ntime.sleep(3)\nprint('second')\n")
	cmd := exec.Command(sandboxctl, "run", "--timeout", "10s", path)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer stopGracefully(t, cmd)
	first := make(chan string, 1)
	go func() {
		// Python writes "first" and its newline in two writes (unbuffered
		// mode); read up to the newline.
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		first <- line
	}()
	select {
	case got := <-first:
		if got != "first\n" {
			t.Errorf("first output = %q, want %q", got, "first\n")
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("the first line arrived after %s, with the program's end, not live", d)
		}
	case <-time.After(2500 * time.Millisecond):
		t.Errorf("nothing arrived within 2.5s although the program printed and flushed at once: output is not streamed live")
	}
}

// TestCLIUnreadStdin: a program that never reads its stdin ends the run
// even when sandboxctl is given much more input than a pipe holds.
func TestCLIUnreadStdin(t *testing.T) {
	requireSandbox(t)
	path := writeScript(t, "noread.py", "print('done')\n")
	o := sbx(t, invocation{args: []string{"run", "--timeout", "5s", path}, stdin: bytes.Repeat([]byte("i"), 4<<20), timeout: 15 * time.Second})
	if o.code != 0 || string(o.stdout) != "done\n" {
		t.Errorf("exit %d, stdout %q, stderr %q; want 0 and %q", o.code, o.stdout, o.stderr, "done\n")
	}
	if o.elapsed > 3*time.Second {
		t.Errorf("took %s: unread stdin kept the run waiting", o.elapsed)
	}
}

// TestCLIExtraFile: --file puts more files next to the entry file.
func TestCLIExtraFile(t *testing.T) {
	requireSandbox(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data.csv")
	if err := os.WriteFile(data, []byte("a,b\n1,2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := writeScript(t, "main.py", "print(open('data.csv').read(), end='')\n")
	o := sbx(t, invocation{args: []string{"run", "--file", data, path}})
	if o.code != 0 || string(o.stdout) != "a,b\n1,2\n" {
		t.Errorf("exit %d, stdout %q, stderr %q; want the content of --file data.csv", o.code, o.stdout, o.stderr)
	}
}

// stopGracefully ends a sandboxctl the test started with SIGTERM, so that it
// removes its run (a SIGKILL would leave the run's state to the next sweep).
func stopGracefully(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Errorf("sandboxctl did not exit within 10s of SIGTERM")
		_ = cmd.Process.Kill()
		<-done
	}
}

// TestCLIDoctor: doctor prints one line per guarantee, ends with a real
// sandboxed run, and exits 0 on a host where the suite itself can run.
func TestCLIDoctor(t *testing.T) {
	requireSandbox(t)
	o := sbx(t, invocation{args: []string{"doctor"}, timeout: time.Minute})
	stdout := string(o.stdout)
	if o.code != 0 {
		t.Fatalf("doctor exited %d on a host that runs sandboxes:\n%s", o.code, stdout)
	}
	for _, want := range []string{"user namespaces", "cgroups", "socket memory", "seccomp", "openat2", "host id pool", "per-user quotas", "devpts", "wasm backend", "sandboxed run"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("doctor output lacks %q:\n%s", want, stdout)
		}
	}
	if !regexp.MustCompile(`(?m)^ok +sandboxed run +status ok`).MatchString(stdout) {
		t.Errorf("doctor's sandboxed run did not pass:\n%s", stdout)
	}
	// Issue 13's guarantees, each probed for real on this host (root): a
	// wasm worker started and read from /proc, a run's own view of its
	// ids, user limits, rlimits and the host, a probe cgroup's socket
	// accounting.
	for _, want := range []string{"wasm workers", "run's host ids", "run's user limits", "run's rlimits", "host facts hidden", "socket memory"} {
		if !regexp.MustCompile(`(?m)^ok +` + regexp.QuoteMeta(want) + ` +\S`).MatchString(stdout) {
			t.Errorf("doctor does not say %q holds on this host:\n%s", want, stdout)
		}
	}
	for _, want := range []string{"NoNewPrivs 1, Seccomp 2", "CapEff 0000000000000000", "probed", "sigpending=1024", "max_inotify_instances=128", "mountinfo names none"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("doctor output lacks %q:\n%s", want, stdout)
		}
	}
}

// TestCLIRuntimes: every built-in runtime is listed with a probed version.
func TestCLIRuntimes(t *testing.T) {
	o := sbx(t, invocation{args: []string{"runtimes"}, timeout: time.Minute})
	stdout := string(o.stdout)
	if o.code != 0 {
		t.Fatalf("runtimes exited %d: %s", o.code, o.stderr)
	}
	for _, name := range []string{"python", "javascript", "ruby", "bash", "sh", "c", "c++"} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` +\S+`).MatchString(stdout) {
			t.Errorf("runtimes does not list %s:\n%s", name, stdout)
		}
	}
	if !regexp.MustCompile(`(?m)^python +3\.\d+\.\d+`).MatchString(stdout) {
		t.Errorf("python's version was not probed:\n%s", stdout)
	}
}

// TestCLIRuntimesWasmNotBuilt: without the WASI interpreters, no runtime
// lists the wasm backend, and doctor says how to build them.
func TestCLIRuntimesWasmNotBuilt(t *testing.T) {
	t.Setenv("SANDBOXD_WASM_DIR", t.TempDir())
	o := sbx(t, invocation{args: []string{"runtimes"}, timeout: time.Minute})
	if o.code != 0 {
		t.Fatalf("runtimes exited %d: %s", o.code, o.stderr)
	}
	if strings.Contains(string(o.stdout), "wasm") {
		t.Errorf("runtimes lists wasm with no interpreter built:\n%s", o.stdout)
	}
	o = sbx(t, invocation{args: []string{"doctor"}, timeout: time.Minute})
	if !regexp.MustCompile(`(?m)^warn +wasm backend .*not built`).Match(o.stdout) || !strings.Contains(string(o.stdout), "build-wasm-runtimes.sh") {
		t.Errorf("doctor does not say the wasm interpreters are not built, and how to build them:\n%s", o.stdout)
	}
}
