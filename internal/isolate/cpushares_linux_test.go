package isolate

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/cgroups/v3/cgroup1"

	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/testenv"
)

// weightCgroup is a runCgroup that only records its CPU weight, in parts
// (weightLeast: the least).
type weightCgroup struct {
	runCgroup
	parts int
}

func (c *weightCgroup) weight(parts int) error {
	c.parts = parts
	return nil
}

// TestCPUSharesParts: the busy sandboxes of a tenant each get an equal
// part of the default weight, other tenants' are untouched, and a
// sandbox's leaving (or ending) gives the rest their larger parts.
// Sessions join and leave as often as they work; only the last leave
// makes them idle, at the least weight.
func TestCPUSharesParts(t *testing.T) {
	var c cpuShares
	box := func() *sandbox { return &sandbox{cg: &weightCgroup{parts: -1}} }
	parts := func(bs ...*sandbox) []int {
		var p []int
		for _, b := range bs {
			p = append(p, b.cg.(*weightCgroup).parts)
		}
		return p
	}
	a1, a2, a3, b1 := box(), box(), box(), box()
	for _, s := range []*sandbox{a1, a2, a3} {
		if err := c.join(s, "a"); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.join(b1, "b"); err != nil {
		t.Fatal(err)
	}
	if got, want := parts(a1, a2, a3, b1), []int{3, 3, 3, 1}; !slices.Equal(got, want) {
		t.Fatalf("parts with a busy thrice and b once: %v, want %v", got, want)
	}

	// A run ends (destroyCgroup drops it): a's other two get halves.
	c.drop(a3)
	if got, want := parts(a1, a2, b1), []int{2, 2, 1}; !slices.Equal(got, want) {
		t.Fatalf("parts after one of a's ended: %v, want %v", got, want)
	}
	if err := c.join(a3, "a"); !errors.Is(err, errSandboxGone) {
		t.Fatalf("join of an ended sandbox: %v, want errSandboxGone", err)
	}
	if n := c.busyIn("a"); n != 2 {
		t.Fatalf("a has %d busy after an ended sandbox joined, want 2", n)
	}

	// A session busy twice at once (a cell and a file write) stays busy
	// until both are done, and is idle at the least weight after.
	sess := box()
	for range 2 {
		if err := c.join(sess, "b"); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := parts(b1, sess), []int{2, 2}; !slices.Equal(got, want) {
		t.Fatalf("parts with b's run and session busy: %v, want %v", got, want)
	}
	if err := c.leave(sess); err != nil {
		t.Fatal(err)
	}
	if got, want := parts(b1, sess), []int{2, 2}; !slices.Equal(got, want) {
		t.Fatalf("parts after one of the session's two works ended: %v, want %v", got, want)
	}
	if err := c.leave(sess); err != nil {
		t.Fatal(err)
	}
	if got, want := parts(b1, sess), []int{1, weightLeast}; !slices.Equal(got, want) {
		t.Fatalf("parts after the session went idle: %v, want %v", got, want)
	}
	// One leave too many changes nothing.
	if err := c.leave(sess); err != nil || c.busyIn("b") != 1 {
		t.Fatalf("leave of an idle session: %v, b busy %d", err, c.busyIn("b"))
	}
	c.drop(a1)
	c.drop(a2)
	c.drop(b1)
	c.drop(sess)
	if len(c.groups) != 0 {
		t.Fatalf("groups left after every sandbox ended: %v", c.groups)
	}
}

// TestPartWeight: parts of the kernels' defaults, never under their least.
func TestPartWeight(t *testing.T) {
	for _, tc := range []struct{ def, least, parts, want int }{
		{1024, 2, 1, 1024},
		{1024, 2, 3, 341},
		{1024, 2, 1000, 2},
		{1024, 2, weightLeast, 2},
		{100, 1, 1, 100},
		{100, 1, 4, 25},
		{100, 1, 300, 1},
		{100, 1, weightLeast, 1},
	} {
		if got := partWeight(tc.def, tc.least, tc.parts); got != tc.want {
			t.Errorf("partWeight(%d, %d, %d) = %d, want %d", tc.def, tc.least, tc.parts, got, tc.want)
		}
	}
}

// TestCPUSharesByTenant: real runs, real cgroups. Tenant a's three runs
// and b's one are at once busy: the kernel's files give each of a's a
// third of the default weight and b's all of it.
func TestCPUSharesByTenant(t *testing.T) {
	r := requireRunner(t)
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		testenv.MissingFile(t, "/usr/bin/python3")
	}
	l := limits.Limits{Timeout: limits.Duration(time.Minute)}.Merge(limits.Defaults())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for _, tenant := range []string{"a", "a", "a", "b"} {
		ws, err := r.NewWorkspace(l.Tmpfs)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ws.Close() })
		if err := ws.WriteFile(run.File{Name: "main.py", Content: []byte("import time\ntime.sleep(60)\n")}); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = r.Run(ctx, ws, Exec{Argv: []string{"/usr/bin/python3", "main.py"}, Env: []string{"PATH=/usr/bin:/bin"}, Limits: l, Tenant: tenant})
		}()
	}
	want := []string{"1024", "341", "341", "341"}
	if r.cg.version() == "v2" {
		want = []string{"100", "33", "33", "33"}
	}
	var got []string
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if got = runWeights(t, r); slices.Equal(got, want) && r.shares.busyIn("a") == 3 && r.shares.busyIn("b") == 1 {
			break
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("the runs' CPU weights: %v, want %v", got, want)
	}
	cancel()
	wg.Wait()
	if n := r.shares.busyIn("a") + r.shares.busyIn("b"); n != 0 {
		t.Fatalf("%d sandboxes still counted busy after every run ended", n)
	}
}

// runWeights reads the CPU weight of every run cgroup of r, largest
// first.
func runWeights(t *testing.T, r *Runner) []string {
	t.Helper()
	var pat string
	switch d := r.cg.(type) {
	case *v1Driver:
		pat = filepath.Join(d.dir(cgroup1.Cpu, d.parent), "*", "cpu.shares")
	case *v2Driver:
		pat = filepath.Join(d.mountpoint, d.parent, "*", "cpu.weight")
	default:
		t.Fatalf("unknown cgroup driver %T", d)
	}
	files, _ := filepath.Glob(pat)
	var w []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // a run's cgroup removed meanwhile
		}
		w = append(w, strings.TrimSpace(string(b)))
	}
	slices.SortFunc(w, func(x, y string) int {
		a, _ := strconv.Atoi(x)
		b, _ := strconv.Atoi(y)
		return b - a
	})
	return w
}

// TestSessionCPUShares: a session is busy for its tenant while it starts,
// at the least weight once idle, shares its tenant's weight with a run of
// the same tenant while busy, and gives the run all of it when idle again.
// Busy on an ended session is refused and counts nothing.
func TestSessionCPUShares(t *testing.T) {
	r := requireRunner(t)
	l := limits.Defaults()
	ws, err := r.NewWorkspace(l.Tmpfs)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	sp, err := r.StartSession(t.Context(), ws, Exec{Argv: []string{"/usr/bin/python3", "-c", "import os\nos.read(3, 1)"}, Limits: l, Tenant: "a"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { sp.Kill(); _, _ = sp.Wait() }()
	full, half, least := "1024", "512", "2"
	if r.cg.version() == "v2" {
		full, half, least = "100", "50", "1"
	}
	weight := func(cg runCgroup) string {
		t.Helper()
		b, err := os.ReadFile(cgroupFile(t, cg, cgroup1.Cpu, "cpu.shares", "cpu.weight"))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	if w := weight(sp.cg); w != full {
		t.Fatalf("a starting session's weight is %s, want %s (busy for its tenant)", w, full)
	}
	if err := sp.Idle(); err != nil {
		t.Fatal(err)
	}
	if w := weight(sp.cg); w != least {
		t.Fatalf("an idle session's weight is %s, want the least, %s", w, least)
	}

	// A held run of the same tenant, activated while the session is busy.
	hws, err := r.NewWorkspace(l.Tmpfs)
	if err != nil {
		t.Fatal(err)
	}
	defer hws.Close()
	h, err := r.StartHeld(t.Context(), hws, Exec{Argv: []string{"/usr/bin/python3", "-c", "import os\nos.read(3, 1)"}, Limits: l})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { h.Kill(); _, _ = h.Wait() }()
	if w := weight(h.cg); w != least {
		t.Fatalf("a held sandbox's weight is %s, want the least, %s", w, least)
	}
	if err := sp.Busy("a"); err != nil {
		t.Fatal(err)
	}
	if err := h.Activate(t.Context(), Activation{Limits: l, Control: []byte("x"), Tenant: "a"}); err != nil {
		t.Fatal(err)
	}
	if ws, wh := weight(sp.cg), weight(h.cg); ws != half || wh != half {
		t.Fatalf("a's busy session and run weigh %s and %s, want %s each", ws, wh, half)
	}
	if err := sp.Idle(); err != nil {
		t.Fatal(err)
	}
	if ws, wh := weight(sp.cg), weight(h.cg); ws != least || wh != full {
		t.Fatalf("a's idle session and busy run weigh %s and %s, want %s and %s", ws, wh, least, full)
	}
	if _, err := h.Wait(); err != nil {
		t.Fatal(err)
	}
	sp.Kill()
	_, _ = sp.Wait()
	if err := sp.Busy("a"); !errors.Is(err, errSandboxGone) {
		t.Fatalf("Busy on an ended session: %v, want errSandboxGone", err)
	}
	if n := r.shares.busyIn("a"); n != 0 {
		t.Fatalf("%d of a's sandboxes counted busy after all ended", n)
	}
}
