// Package tests holds the end-to-end and adversarial tests of sandboxd: they
// build the real sandboxctl binary once and run untrusted programs through
// it, exactly as a user at a terminal would (argv only, never a shell).
//
// Tests that need the sandbox call requireSandbox, which skips with a reason
// where the host cannot confine (not root, no user namespaces, no cgroups);
// CI runs as root, so there everything runs for real. After the whole suite,
// TestMain checks that no run left anything behind on the host.
package tests

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/testenv"
)

// sandboxctl is the path of the binary TestMain built.
var sandboxctl string

// hostSecret is set in this process's environment (and so in sandboxctl's):
// no program in a sandbox may ever see it.
var hostSecret = "sbx-host-secret-" + randomHex(8)

const hostSecretVar = "SBX_HOST_SECRET"

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	root, err := filepath.Abs("..")
	if err != nil {
		fmt.Fprintln(os.Stderr, "tests: find module root:", err)
		return 1
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		fmt.Fprintln(os.Stderr, "tests: the module root is expected at .. of the test's working directory:", err)
		return 1
	}
	if prebuilt := os.Getenv("SANDBOXCTL_BIN"); prebuilt != "" {
		// A binary built elsewhere (a release, or by root for a run of
		// the suite as an unprivileged user): test it as it is.
		if sandboxctl, err = filepath.Abs(prebuilt); err != nil {
			fmt.Fprintln(os.Stderr, "tests: SANDBOXCTL_BIN:", err)
			return 1
		}
	} else {
		dir, err := os.MkdirTemp("", "sandboxctl-e2e-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "tests:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		sandboxctl = filepath.Join(dir, "sandboxctl")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		build := exec.CommandContext(ctx, "go", "build", "-buildvcs=false", "-o", sandboxctl, "./cmd/sandboxctl")
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "tests: go build ./cmd/sandboxctl: %v\n%s", err, out)
			return 1
		}
		// The init binary beside it, as go install puts it
		// (initbin_linux.go); TestInitFallback forces the other path.
		if err := buildInit(ctx, root, dir); err != nil {
			fmt.Fprintln(os.Stderr, "tests:", err)
			return 1
		}
	}
	// The daemon for the API tests, next to sandboxctl (api_helpers_test.go).
	removeSandboxd, err := buildSandboxd(root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tests:", err)
		return 1
	}
	defer removeSandboxd()
	os.Setenv(hostSecretVar, hostSecret)

	// What a killed daemon or test left on this host before the suite
	// started is not this suite's doing: the leak checks count only the
	// rest, and the suite says what it found.
	if sandboxUsable() {
		for _, l := range leaks() {
			preexisting[l] = true
			fmt.Fprintln(os.Stderr, "tests: left on the host before the suite started, not counted as its leak:", l)
		}
	}

	code := m.Run()

	if sandboxUsable() {
		if leaks := waitNoLeaks(10 * time.Second); len(leaks) > 0 {
			fmt.Fprintln(os.Stderr, "FAIL: the suite left sandbox state behind on the host:")
			for _, l := range leaks {
				fmt.Fprintln(os.Stderr, "  -", l)
			}
			if code == 0 {
				code = 1
			}
		} else {
			fmt.Fprintln(os.Stderr, "leak check: no process, run directory, cgroup or mount of any run remains")
		}
	}
	return code
}

// buildInit builds cmd/sandboxd-init into dir.
func buildInit(ctx context.Context, root, dir string) error {
	build := exec.CommandContext(ctx, "go", "build", "-buildvcs=false", "-o", filepath.Join(dir, "sandboxd-init"), "./cmd/sandboxd-init")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/sandboxd-init: %w\n%s", err, out)
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// ---------------------------------------------------------------------------
// Running sandboxctl

// invocation is one run of sandboxctl.
type invocation struct {
	args  []string
	stdin []byte
	// timeout is the test side's bound on the whole invocation; the
	// sandbox's own limits must end the run well before it.
	timeout time.Duration
	// env is added to sandboxctl's environment.
	env []string
}

// outcome is what sandboxctl did.
type outcome struct {
	stdout, stderr []byte
	code           int
	elapsed        time.Duration
}

const defaultTestTimeout = 30 * time.Second

// sbx runs sandboxctl with inv and fails the test if it does not return
// within the test-side timeout (a hung sandbox is a bug, not a slow test).
// Call it from the test's goroutine; other goroutines use execSandboxctl.
func sbx(t testing.TB, inv invocation) outcome {
	t.Helper()
	o, err := execSandboxctl(inv)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// execSandboxctl runs sandboxctl with inv, killing it at the test-side
// timeout (an error then, as when it cannot start).
func execSandboxctl(inv invocation) (outcome, error) {
	if inv.timeout == 0 {
		inv.timeout = defaultTestTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), inv.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, sandboxctl, inv.args...)
	cmd.WaitDelay = 2 * time.Second
	if len(inv.env) > 0 {
		cmd.Env = append(os.Environ(), inv.env...)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if inv.stdin != nil {
		cmd.Stdin = bytes.NewReader(inv.stdin)
	}
	start := time.Now()
	err := cmd.Run()
	o := outcome{stdout: stdout.Bytes(), stderr: stderr.Bytes(), elapsed: time.Since(start)}
	if ctx.Err() != nil {
		return o, fmt.Errorf("sandboxctl %s did not return within the test's %s (killed); stderr:\n%s", strings.Join(inv.args, " "), inv.timeout, tail(o.stderr))
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		o.code = ee.ExitCode()
	default:
		return o, fmt.Errorf("start sandboxctl: %w", err)
	}
	return o, nil
}

// result is a run result as the tests use it; it is decoded from the wire
// form (wireResult), which is declared here, not imported, so the tests
// check the JSON a client sees.
type result struct {
	ID              string
	Status          string
	Reason          string
	ExitCode        int
	Signal          int
	SignalName      string
	Stdout          []byte
	Stderr          []byte
	StdoutTruncated bool
	StderrTruncated bool
	WallTime        time.Duration
	CPUTime         time.Duration
	PeakMemory      int64
	OOMKills        int
	Files           []outFile
	FilesTruncated  bool
	Compile         *result
	Runtime         string
	Version         string
	Isolation       isolation
	Error           string
}

type outFile struct {
	Name    string
	Size    int64
	Mode    uint32
	Content []byte
	Omitted bool
}

// wireResult is the JSON of a result: output and file contents as text,
// or base64 with an "_encoding" field when not UTF-8; times in ms.
type wireResult struct {
	ID              string          `json:"id"`
	Status          string          `json:"status"`
	Reason          string          `json:"reason"`
	ExitCode        int             `json:"exit_code"`
	Signal          int             `json:"signal"`
	SignalName      string          `json:"signal_name"`
	Stdout          string          `json:"stdout"`
	StdoutEncoding  string          `json:"stdout_encoding"`
	Stderr          string          `json:"stderr"`
	StderrEncoding  string          `json:"stderr_encoding"`
	StdoutTruncated bool            `json:"stdout_truncated"`
	StderrTruncated bool            `json:"stderr_truncated"`
	WallTimeMS      float64         `json:"wall_time_ms"`
	CPUTimeMS       float64         `json:"cpu_time_ms"`
	PeakMemory      int64           `json:"peak_memory_bytes"`
	OOMKills        int             `json:"oom_kills"`
	Files           []wireFile      `json:"files"`
	FilesTruncated  bool            `json:"files_truncated"`
	Compile         json.RawMessage `json:"compile"`
	Runtime         string          `json:"runtime"`
	Version         string          `json:"version"`
	Isolation       isolation       `json:"isolation"`
	Error           string          `json:"error"`
}

type wireFile struct {
	Name     string `json:"name"`
	Size     int64  `json:"size"`
	Mode     uint32 `json:"mode"`
	Content  string `json:"content"`
	Encoding string `json:"encoding"`
	Omitted  bool   `json:"omitted"`
}

// decodeText reverses the wire form's text-or-base64 encoding.
func decodeText(text, encoding string) ([]byte, error) {
	switch encoding {
	case "":
		return []byte(text), nil
	case "base64":
		return base64.StdEncoding.DecodeString(text)
	}
	return nil, fmt.Errorf("unknown encoding %q", encoding)
}

// UnmarshalJSON decodes the wire form strictly: a renamed field must fail
// loudly, not read as zero.
func (r *result) UnmarshalJSON(b []byte) error {
	var w wireResult
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return err
	}
	var err error
	*r = result{
		ID: w.ID, Status: w.Status, Reason: w.Reason, ExitCode: w.ExitCode,
		Signal: w.Signal, SignalName: w.SignalName,
		StdoutTruncated: w.StdoutTruncated, StderrTruncated: w.StderrTruncated,
		WallTime:   time.Duration(w.WallTimeMS * float64(time.Millisecond)),
		CPUTime:    time.Duration(w.CPUTimeMS * float64(time.Millisecond)),
		PeakMemory: w.PeakMemory, OOMKills: w.OOMKills, FilesTruncated: w.FilesTruncated,
		Runtime: w.Runtime, Version: w.Version, Isolation: w.Isolation, Error: w.Error,
	}
	if r.Stdout, err = decodeText(w.Stdout, w.StdoutEncoding); err != nil {
		return fmt.Errorf("stdout: %w", err)
	}
	if r.Stderr, err = decodeText(w.Stderr, w.StderrEncoding); err != nil {
		return fmt.Errorf("stderr: %w", err)
	}
	for _, f := range w.Files {
		content, err := decodeText(f.Content, f.Encoding)
		if err != nil {
			return fmt.Errorf("file %s: %w", f.Name, err)
		}
		r.Files = append(r.Files, outFile{Name: f.Name, Size: f.Size, Mode: f.Mode, Content: content, Omitted: f.Omitted})
	}
	if len(w.Compile) > 0 && string(w.Compile) != "null" {
		r.Compile = new(result)
		if err := r.Compile.UnmarshalJSON(w.Compile); err != nil {
			return fmt.Errorf("compile: %w", err)
		}
	}
	return nil
}

type isolation struct {
	Backend    string   `json:"backend"`
	Namespaces []string `json:"namespaces"`
	Cgroup     string   `json:"cgroup"`
	Seccomp    bool     `json:"seccomp"`
	NoNewPrivs bool     `json:"no_new_privs"`
	Rootfs     string   `json:"rootfs"`
	UID        int      `json:"uid"`
	Network    string   `json:"network"`
	Warm       bool     `json:"warm"`
	Zygote     bool     `json:"zygote"`
	Init       string   `json:"init"`
}

// file returns the produced file called name, or nil.
func (r *result) file(name string) *outFile {
	for i := range r.Files {
		if r.Files[i].Name == name {
			return &r.Files[i]
		}
	}
	return nil
}

// String is a short summary for failure messages.
func (r *result) String() string {
	return fmt.Sprintf("status=%s reason=%q exit_code=%d signal=%d wall=%s cpu=%s peak=%d oom_kills=%d error=%q\n--- stdout (%d bytes):\n%s\n--- stderr (%d bytes):\n%s",
		r.Status, r.Reason, r.ExitCode, r.Signal, r.WallTime, r.CPUTime, r.PeakMemory, r.OOMKills, r.Error,
		len(r.Stdout), tail(r.Stdout), len(r.Stderr), tail(r.Stderr))
}

// tail keeps failure messages readable when a program printed a lot.
func tail(b []byte) string {
	const max = 3000
	if len(b) > max {
		return fmt.Sprintf("[... %d bytes cut ...]%s", len(b)-max, b[len(b)-max:])
	}
	return string(b)
}

// runSpec is one program to run through `sandboxctl run --json`.
type runSpec struct {
	// name is the entry file's name in the workspace (default main.py).
	name string
	code string
	// flags go to sandboxctl, before the file; args to the program, after.
	flags []string
	args  []string
	stdin []byte
	// timeout is the test-side bound (default defaultTestTimeout).
	timeout time.Duration
	// env is added to sandboxctl's environment.
	env []string
}

// runJSON runs s with --json and returns the decoded result and
// sandboxctl's exit code. It fails the test if there is no result.
func runJSON(t testing.TB, s runSpec) (*result, int) {
	t.Helper()
	r, o := runJSONOutcome(t, s)
	return r, o.code
}

func runJSONOutcome(t testing.TB, s runSpec) (*result, outcome) {
	t.Helper()
	if s.name == "" {
		s.name = "main.py"
	}
	path := filepath.Join(t.TempDir(), s.name)
	if err := os.WriteFile(path, []byte(s.code), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"run", "--json"}, s.flags...)
	wantWarm := false
	if warm != nil {
		// The warm suite: the same run through a daemon's warm pool.
		args = append([]string{"run", "--json", "--server", warm.url}, s.flags...)
		wantWarm = warm.fits(s)
		if wantWarm {
			warm.waitReady(t)
		}
	}
	args = append(append(args, path), s.args...)
	o := sbx(t, invocation{args: args, stdin: s.stdin, timeout: s.timeout, env: s.env})
	var r result
	if err := newStrictDecoder(o.stdout).Decode(&r); err != nil {
		t.Fatalf("sandboxctl %s: exit code %d and no JSON result (%v); stdout:\n%s\nstderr:\n%s", strings.Join(args, " "), o.code, err, tail(o.stdout), tail(o.stderr))
	}
	if wantWarm && !r.Isolation.Warm {
		t.Fatalf("the warm suite's run did not take a warm sandbox: %s", r.String())
	}
	if wantWarm && r.Isolation.Zygote != warm.zygote {
		t.Fatalf("the warm suite's run was forked by the fork server: %v, want %v: %s", r.Isolation.Zygote, warm.zygote, r.String())
	}
	return &r, o
}

// newStrictDecoder decodes a result refusing fields the tests do not know:
// a renamed field must fail loudly, not read as zero.
func newStrictDecoder(b []byte) *json.Decoder {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec
}

// runPy runs a Python program with sandboxctl flags and returns the result
// and sandboxctl's exit code.
func runPy(t testing.TB, code string, flags ...string) (*result, int) {
	t.Helper()
	return runJSON(t, runSpec{code: code, flags: flags})
}

// wantStatus fails the test unless the run ended with status want and
// sandboxctl with exit code wantCode.
func wantStatus(t testing.TB, r *result, code int, want string, wantCode int) {
	t.Helper()
	if r.Status != want {
		t.Fatalf("status = %q, want %q\n%s", r.Status, want, r)
	}
	if code != wantCode {
		t.Fatalf("sandboxctl exit code = %d, want %d for status %s\n%s", code, wantCode, want, r)
	}
}

// ---------------------------------------------------------------------------
// Skipping where the sandbox cannot run

var (
	probeOnce   sync.Once
	probeReason string // empty when the sandbox works here
)

// probe runs a trivial program once to learn whether this host can confine.
func probe() {
	if os.Geteuid() != 0 {
		probeReason = fmt.Sprintf("running as uid %d, not root", os.Geteuid())
		return
	}
	dir, err := os.MkdirTemp("", "sandboxctl-probe-")
	if err != nil {
		probeReason = err.Error()
		return
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "probe.py")
	if err := os.WriteFile(path, []byte("print('ok')\n"), 0o644); err != nil {
		probeReason = err.Error()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, sandboxctl, "run", "--timeout", "10s", path)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 125 {
		probeReason = "a trivial run failed with exit 125: " + strings.TrimSpace(stderr.String())
	}
	// Any other failure is the sandbox's bug, for the tests to show.
}

func sandboxUsable() bool {
	if sandboxctl == "" {
		return false
	}
	probeOnce.Do(probe)
	return probeReason == ""
}

// requireSandbox stops the test where the sandbox cannot run here: it
// skips without root, and fails as root (testenv.MissingSandbox).
func requireSandbox(t testing.TB) {
	t.Helper()
	if !sandboxUsable() {
		testenv.MissingSandbox(t, errors.New(probeReason))
	}
}
