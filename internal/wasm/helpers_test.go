package wasm

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/testenv"
	"github.com/sandboxd/sandboxd/internal/workspace"
)

// modes are the runner modes every behaviour test runs under.
var modes = []Mode{ModeWorker, ModeInProcess}

// The tests share one Runner per mode, as a daemon would, with a
// compilation cache in a directory of the test binary's own, so that the
// interpreters are compiled once per machine and not once per test.
var (
	sharedMu      sync.Mutex
	sharedRunners = map[Mode]*Runner{}
)

func runnerFor(t testing.TB, mode Mode) *Runner {
	t.Helper()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if r := sharedRunners[mode]; r != nil {
		return r
	}
	r, err := New(context.Background(), Config{
		Mode:     mode,
		CacheDir: filepath.Join(os.TempDir(), "sandboxd-wasm-test-cache"),
		Logger:   slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatalf("New(%s): %v", mode, err)
	}
	warmInterpreters(t, r)
	sharedRunners[mode] = r
	return r
}

// warmInterpreters compiles the interpreters, when they are built, with
// Warm's minutes of room: a test's first run would otherwise compile
// python.wasm (seconds, more on a loaded machine) inside its own limits.
func warmInterpreters(t testing.TB, r *Runner) {
	t.Helper()
	if r.Available("python") != nil || r.Available("quickjs") != nil {
		return
	}
	if err := r.Warm(context.Background(), "python", "quickjs"); err != nil {
		t.Fatalf("Warm: %v", err)
	}
}

// testRunner is the runner of the default mode.
func testRunner(t testing.TB) *Runner { return runnerFor(t, ModeAuto) }

// eachMode runs f as a parallel subtest per mode.
func eachMode(t *testing.T, f func(t *testing.T, r *Runner)) {
	for _, m := range modes {
		t.Run(string(m), func(t *testing.T) {
			t.Parallel()
			f(t, runnerFor(t, m))
		})
	}
}

// requireRuntime stops the test when the interpreter is not built: it
// fails as root, skips otherwise (testenv.MissingWasmRuntimes).
func requireRuntime(t testing.TB, name string) {
	t.Helper()
	if err := testRunner(t).Available(name); err != nil {
		if errors.Is(err, ErrNotBuilt) {
			testenv.MissingWasmRuntimes(t, err)
		}
		t.Fatal(err)
	}
}

// testdata returns the path of a module in testdata/.
func testdata(name string) string { return filepath.Join("testdata", name) }

// testLimits are the defaults with a short timeout.
func testLimits() limits.Limits {
	l := limits.Defaults()
	l.Timeout = limits.Duration(5 * time.Second)
	l.CPUTime = limits.Duration(5 * time.Second)
	return l
}

// script is an Exec that runs one file with an interpreter.
func script(module, name, src string) Exec {
	return Exec{
		Module: module,
		Argv:   []string{module, workspace.Dir + "/" + name},
		Env:    []string{"PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1", "HOME=/workspace", "LANG=C.UTF-8"},
		Files:  []run.File{{Name: name, Content: []byte(src)}},
		Limits: testLimits(),
	}
}

func mustRun(t testing.TB, r *Runner, e Exec) *run.Result {
	t.Helper()
	res, err := r.Run(context.Background(), e)
	if err != nil {
		t.Fatalf("Run: %v (result %+v)", err, res)
	}
	return res
}

// summary is what a failing test prints about a result.
func summary(res *run.Result) string {
	var b bytes.Buffer
	b.WriteString("status=" + string(res.Status) + " reason=" + res.Reason)
	b.WriteString("\nstdout: " + truncate(res.Stdout) + "\nstderr: " + truncate(res.Stderr))
	return b.String()
}

func truncate(b []byte) string {
	if len(b) > 2000 {
		return string(b[:2000]) + "..."
	}
	return string(b)
}
