package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// sandboxdCaps are the capabilities sandboxd needs, and no more: the
// Kubernetes manifests' security posture rests on this list (RATIONALE.md,
// "The pod's privileges").
var sandboxdCaps = []string{"sys_admin", "setuid", "setgid", "chown", "dac_override", "fowner", "mknod"}

// TestCapabilitiesNeeded: with only sandboxdCaps in its bounding set (as
// root: an exec'd root process gets what its bounding set allows),
// sandboxctl runs a program with every namespace, a cgroup, seccomp and
// pivot_root, and a memory limit is still enforced; without any one of
// them it cannot, so the list is also the least that works.
func TestCapabilitiesNeeded(t *testing.T) {
	requireSandbox(t)
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("requires setpriv (util-linux)")
	}
	dir := t.TempDir()
	n := 0
	run := func(caps []string, code string) (map[string]any, string) {
		t.Helper()
		n++
		file := filepath.Join(dir, fmt.Sprintf("prog%d.py", n))
		if err := os.WriteFile(file, []byte(code), 0o644); err != nil {
			t.Fatal(err)
		}
		set := "-all"
		for _, c := range caps {
			set += ",+" + c
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, setpriv, "--bounding-set", set, sandboxctl, "run", "--json", "--memory", "64MiB", file)
		out, _ := cmd.CombinedOutput()
		var res map[string]any
		if err := json.Unmarshal(out, &res); err != nil {
			return nil, string(out)
		}
		return res, string(out)
	}
	res, out := run(sandboxdCaps, "print('hi')")
	if res == nil || res["status"] != "ok" {
		t.Fatalf("with %v: %s", sandboxdCaps, tail([]byte(out)))
	}
	iso, _ := res["isolation"].(map[string]any)
	if ns, _ := iso["namespaces"].([]any); len(ns) < 7 || iso["seccomp"] != true || iso["rootfs"] != "pivot_root" || iso["cgroup"] == "" {
		t.Errorf("with %v the isolation is %v", sandboxdCaps, iso)
	}
	if res, out := run(sandboxdCaps, "x = bytearray(200 << 20)"); res == nil || res["status"] != "memory_limit" {
		t.Errorf("with %v a 200 MiB allocation under 64MiB: %s", sandboxdCaps, tail([]byte(out)))
	}
	for i, c := range sandboxdCaps {
		less := append(append([]string(nil), sandboxdCaps[:i]...), sandboxdCaps[i+1:]...)
		if res, out := run(less, "print('hi')"); res != nil && res["status"] == "ok" {
			t.Errorf("without %s a run still works: %s is not needed", c, tail([]byte(out)))
		}
	}
}
