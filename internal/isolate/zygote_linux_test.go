package isolate

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/runtimes"
)

// startZygote returns a fork server of the built-in Python runtime's
// warm runner, closed at the test's end.
func startZygote(t *testing.T, r *Runner) *Zygote {
	t.Helper()
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("needs /usr/bin/python3:", err)
	}
	rt, err := runtimes.Default().Lookup("python")
	if err != nil {
		t.Fatal(err)
	}
	env, err := runtimes.BuildEnv(rt.Env, nil)
	if err != nil {
		t.Fatal(err)
	}
	z := r.NewZygote(append([]string{rt.Binary}, rt.Warm.Flags...), rt.Warm.Source, env)
	t.Cleanup(func() { z.Close() })
	return z
}

// runEntered runs code (main.py) through z in a sandbox started for it.
func runEntered(t *testing.T, r *Runner, z *Zygote, code string, l limits.Limits) *run.Result {
	t.Helper()
	ws, err := r.NewWorkspace(l.Tmpfs)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if err := ws.WriteFile(run.File{Name: "main.py", Content: []byte(code)}); err != nil {
		t.Fatal(err)
	}
	h, err := r.StartEntered(t.Context(), ws, Exec{Limits: l}, z)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.WaitReady(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctl, _ := json.Marshal(map[string]any{"entry": "main.py", "args": []string{}, "env": map[string]string{}})
	if err := h.Activate(t.Context(), Activation{Limits: l, Control: ctl}); err != nil {
		h.Kill()
		_, _ = h.Wait()
		t.Fatal(err)
	}
	res, err := h.Wait()
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestZygoteRuns(t *testing.T) {
	r := requireRunner(t)
	z := startZygote(t, r)
	res := runEntered(t, r, z, "import os, sys\nprint('hi', os.getpid(), os.getuid())\nprint('err', file=sys.stderr)\nsys.exit(3)\n", limits.Defaults())
	t.Logf("%s exit %d out %q err %q", res.Status, res.ExitCode, res.Stdout, res.Stderr)
	if res.ExitCode != 3 || !strings.HasPrefix(string(res.Stdout), "hi ") || string(res.Stderr) != "err\n" {
		t.Fatalf("%+v", res)
	}
}
