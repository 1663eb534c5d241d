package tests

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The suite-wide leak check (no process, run directory, cgroup or
// workspace mount of any run left) runs in TestMain after every test.
// The tests here cover what a single test can provoke: a sandboxctl killed
// mid-run, and many runs at once.

// TestSIGKILLedSandboxctl kills sandboxctl with SIGKILL while its program
// sleeps. Nothing can clean up then but the kernel and the next run: the
// program must die with its supervisor (init's parent-death signal), and
// the next `sandboxctl run` must sweep the run directory, the workspace
// mount and the cgroups left behind.
func TestSIGKILLedSandboxctl(t *testing.T) {
	requireSandbox(t)
	token, flags := tokenFlags()
	path := writeScript(t, "sleep.py", "import time\nprint('sleeping', flush=True)\ntime.sleep(100)\n")
	cmd := exec.Command(sandboxctl, append(append([]string{"run"}, flags...), "--timeout", "60s", path)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	defer func() {
		_ = cmd.Process.Kill()
		<-done
	}()

	procs := waitFor(t, 10*time.Second, func() []hostProc { return tokenRunProcs(token) })
	if len(procs) == 0 {
		t.Fatalf("the sandboxed program never showed up on the host; stderr:\n%s", stderr.String())
	}
	id := runIDOfCgroup(procs[0].cgroup)
	if id == "" {
		t.Fatalf("cannot tell the run id from the program's cgroup %q", procs[0].cgroup)
	}
	before := runProcs(id)
	t.Logf("run %s: %d process(es) before the kill: %v", id, len(before), before)

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-done
	killed := time.Now()
	if left := waitGone(5*time.Second, func() []hostProc { return append(runProcs(id), tokenProcs(token)...) }); len(left) > 0 {
		t.Errorf("5s after sandboxctl was SIGKILLed, %d process(es) of its run still live:", len(left))
		for _, p := range left {
			t.Errorf("  %s", p)
		}
	} else {
		t.Logf("every process of the run was gone %s after the kill", time.Since(killed).Round(time.Millisecond))
	}
	// What is expected to be left until the next run sweeps it.
	dir := filepath.Join(runsDir, id)
	_, dirErr := os.Stat(dir)
	t.Logf("left behind before the sweep: run dir present=%v, cgroups=%v, mounts=%v", dirErr == nil, runCgroups(id), workMountsOf(id))

	r, code := runPy(t, "print('after the kill')\n")
	wantStatus(t, r, code, "ok", 0)
	requireRunGone(t, id)
}

func workMountsOf(id string) []string {
	var out []string
	for _, m := range workMounts() {
		if runIDOfPath(m) == id {
			out = append(out, m)
		}
	}
	return out
}

var hexID = regexp.MustCompile(`[0-9a-f]{16}`)

// TestConcurrentRuns runs several sandboxctl processes at once, with other
// sandboxctl processes starting (and so sweeping the state directory) all
// the while. Every run must succeed: a starting run's fresh directory is
// not a crashed run's leftover.
func TestConcurrentRuns(t *testing.T) {
	requireSandbox(t)
	path := writeScript(t, "main.py", "import sys\nprint(sys.argv[1])\n")
	stop := make(chan struct{})
	var sweepers sync.WaitGroup
	for i := 0; i < 3; i++ {
		sweepers.Add(1)
		go func() {
			defer sweepers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				// A limit above the ceiling: sandboxctl starts its
				// executor (which sweeps leftovers), then refuses the
				// run without starting a sandbox.
				_, _ = execSandboxctl(invocation{args: []string{"run", "--memory", "100GiB", path, "x"}})
			}
		}()
	}
	const workers, runs = 4, 30
	var mu sync.Mutex
	failures := map[string]int{}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < runs; i++ {
				want := fmt.Sprintf("run-%d-%d", w, i)
				o, err := execSandboxctl(invocation{args: []string{"run", path, want}})
				if err != nil || o.code != 0 || string(o.stdout) != want+"\n" {
					msg := fmt.Sprintf("exit %d, stdout %q, stderr %q (%v)", o.code, o.stdout, strings.TrimSpace(string(o.stderr)), err)
					mu.Lock()
					failures[hexID.ReplaceAllString(msg, "<id>")]++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	sweepers.Wait()
	total := 0
	for msg, n := range failures {
		total += n
		t.Errorf("%d run(s) failed: %s", n, msg)
	}
	if total > 0 {
		t.Errorf("%d of %d concurrent runs failed", total, workers*runs)
	}
	if l := waitNoLeaks(5 * time.Second); len(l) > 0 {
		t.Errorf("concurrent runs left state behind: %v", l)
	}
}
