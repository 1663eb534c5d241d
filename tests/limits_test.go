package tests

import (
	"bytes"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	kib = 1 << 10
	mib = 1 << 20
)

// tokenFlags gives a run a unique token in its environment, inherited by
// every process it starts, so the test can look for them on the host.
func tokenFlags() (token string, flags []string) {
	token = "SBX_TOKEN_" + randomHex(8)
	return token, []string{"--env", token + "=1"}
}

// requireNoneLeft fails the test if any process of the run (found by its
// token) or any sandbox-uid process outside a live run exists right now:
// the run returns only once every process of it is gone.
func requireNoneLeft(t *testing.T, token string) {
	t.Helper()
	if left := tokenProcs(token); len(left) > 0 {
		t.Errorf("after the run returned, %d of its processes are still on the host:", len(left))
		for _, p := range left {
			t.Errorf("  %s", p)
		}
		if still := waitGone(5*time.Second, func() []hostProc { return tokenProcs(token) }); len(still) > 0 {
			t.Errorf("and %d are still there 5s later", len(still))
		}
	}
	if left := sandboxProcs(); len(left) > 0 {
		t.Errorf("after the run returned, processes of the sandbox's host uids belong to no live run:")
		for _, p := range left {
			t.Errorf("  %s", p)
		}
	}
}

func TestMemoryLimit(t *testing.T) {
	requireSandbox(t)
	const limit = 128 * mib
	r, code := runPy(t, `
STEP = 64 << 20
held = []
while len(held) * STEP < 1 << 30:
    held.append(bytes([1]) * STEP)
    print("allocated", len(held) * STEP >> 20, "MiB", flush=True)
print("allocated 1 GiB: no memory limit")
`, "--memory", "128MiB", "--timeout", "10s")
	wantStatus(t, r, code, "memory_limit", 122)
	if !strings.Contains(string(r.Stdout), "allocated 64 MiB") {
		t.Errorf("the program did not get its first 64 MiB (the test proves nothing): stdout %q", r.Stdout)
	}
	if r.PeakMemory < 64*mib || r.PeakMemory > limit+4*mib {
		t.Errorf("peak_memory_bytes = %d (%.1f MiB), want between 64 MiB and the 128 MiB limit (plus a little)", r.PeakMemory, float64(r.PeakMemory)/mib)
	}
	if r.OOMKills < 1 {
		t.Errorf("oom_kills = %d, want >= 1 next to a memory_limit status", r.OOMKills)
	}
	if !strings.Contains(r.Reason, "128MiB") {
		t.Errorf("reason %q does not name the 128MiB limit", r.Reason)
	}
}

func TestForkBomb(t *testing.T) {
	requireSandbox(t)
	for _, tc := range []struct {
		name, file, code string
	}{
		{"python", "bomb.py", `import os, time
print("bombing", flush=True)
while True:
    try:
        os.fork()
    except OSError:
        time.sleep(0.001)
`},
		{"bash", "bomb.bash", ":(){ :|:& };:\nsleep 10\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			token, flags := tokenFlags()
			start := time.Now()
			r, code := runJSON(t, runSpec{name: tc.file, code: tc.code, flags: append(flags, "--pids", "32", "--timeout", "3s"), timeout: 20 * time.Second})
			elapsed := time.Since(start)
			if elapsed > 6*time.Second || r.WallTime > 5*time.Second {
				t.Errorf("the fork bomb run took %s (wall_time %s); the 3s timeout must end it", elapsed.Round(time.Millisecond), r.WallTime)
			}
			switch r.Status {
			case "timeout", "exited":
			default:
				t.Errorf("status = %q, want timeout or exited\n%s", r.Status, r)
			}
			if r.Status == "timeout" && code != 124 {
				t.Errorf("sandboxctl exit code = %d, want 124 for a timeout", code)
			}
			requireNoneLeft(t, token)
		})
	}
}

func TestWallTimeout(t *testing.T) {
	requireSandbox(t)
	start := time.Now()
	r, code := runPy(t, "while True:\n    pass\n", "--timeout", "1s")
	elapsed := time.Since(start)
	wantStatus(t, r, code, "timeout", 124)
	if r.WallTime < time.Second || r.WallTime >= 3*time.Second {
		t.Errorf("wall_time_ns = %s, want between 1s and 3s for --timeout 1s", r.WallTime)
	}
	if elapsed >= 5*time.Second {
		t.Errorf("sandboxctl took %s to stop a run with --timeout 1s", elapsed)
	}
	if !strings.Contains(r.Reason, "1s") {
		t.Errorf("reason %q does not name the 1s limit", r.Reason)
	}
}

func TestCPUTimeLimit(t *testing.T) {
	requireSandbox(t)
	r, code := runPy(t, "while True:\n    pass\n", "--cpu-time", "1s", "--timeout", "10s")
	wantStatus(t, r, code, "cpu_limit", 123)
	if r.CPUTime < time.Second {
		t.Errorf("cpu_time_ns = %s, want >= the 1s limit that stopped the run", r.CPUTime)
	}
	if r.WallTime >= 5*time.Second {
		t.Errorf("wall_time_ns = %s: a 1s CPU limit on one busy process took too long", r.WallTime)
	}
}

// TestCPUTimeLimitCountsAllProcesses: the CPU budget is the run's, not each
// process's. Four spinning processes share 1s of CPU; if only the
// per-process RLIMIT_CPU applied, they would burn 4 × 2s.
func TestCPUTimeLimitCountsAllProcesses(t *testing.T) {
	requireSandbox(t)
	cpus := min(2, runtime.NumCPU())
	r, code := runPy(t, `import os
for _ in range(3):
    if os.fork() == 0:
        break
while True:
    pass
`, "--cpu-time", "1s", "--cpus", fmt.Sprint(cpus), "--timeout", "15s")
	wantStatus(t, r, code, "cpu_limit", 123)
	if r.CPUTime < time.Second || r.CPUTime > 2*time.Second {
		t.Errorf("cpu_time_ns = %s, want about the 1s budget of the whole run (>= 1s, < 2s)", r.CPUTime)
	}
	// cpu_time < 2s with four busy processes already shows the budget is
	// the run's, not each process's (that would be 4s); how long that takes
	// on the wall depends on what else the machine runs, so it is not
	// asserted.
}

func TestDoubleForkDaemonDies(t *testing.T) {
	requireSandbox(t)
	token, flags := tokenFlags()
	r, code := runPy(t, `import os, time
pid = os.fork()
if pid == 0:
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    fd = os.open("/dev/null", os.O_RDWR)
    for i in (0, 1, 2):
        os.dup2(fd, i)
    os.execv("/usr/bin/sleep", ["sleep", "1000"])
os.waitpid(pid, 0)
time.sleep(0.3)
print("daemon started")
`, append(flags, "--timeout", "10s")...)
	wantStatus(t, r, code, "ok", 0)
	if r.WallTime >= 3*time.Second {
		t.Errorf("wall_time_ns = %s: the run waited for the daemon instead of ending with its program", r.WallTime)
	}
	requireNoneLeft(t, token)
}

func TestSigtermIgnoringProcessDies(t *testing.T) {
	requireSandbox(t)
	token, flags := tokenFlags()
	start := time.Now()
	r, code := runPy(t, `import os, signal, time
for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1):
    signal.signal(s, signal.SIG_IGN)
os.fork()
while True:
    time.sleep(1)
`, append(flags, "--timeout", "1s")...)
	elapsed := time.Since(start)
	wantStatus(t, r, code, "timeout", 124)
	if r.WallTime >= 3*time.Second || elapsed >= 5*time.Second {
		t.Errorf("a SIGTERM-ignoring program with --timeout 1s ran for %s (sandboxctl %s)", r.WallTime, elapsed)
	}
	requireNoneLeft(t, token)
}

func TestOutputLimit(t *testing.T) {
	requireSandbox(t)
	pattern := make([]byte, 64*kib)
	for i := range pattern {
		pattern[i] = byte(i % 251)
	}
	for _, tc := range []struct {
		name   string
		fd     int
		flags  []string
		capped int
	}{
		{"stdout default cap", 1, nil, 1 * mib},
		{"stderr default cap", 2, nil, 1 * mib},
		{"stdout 10KiB cap", 1, []string{"--output", "10KiB"}, 10 * kib},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			start := time.Now()
			r, code := runPy(t, fmt.Sprintf(`import os
chunk = bytes(i %% 251 for i in range(65536))
for _ in range(1600):  # 100 MiB
    os.write(%d, chunk)
`, tc.fd), append(tc.flags, "--timeout", "20s")...)
			elapsed := time.Since(start)
			wantStatus(t, r, code, "output_limit", 121)
			got, truncated, other := r.Stdout, r.StdoutTruncated, r.Stderr
			if tc.fd == 2 {
				got, truncated, other = r.Stderr, r.StderrTruncated, r.Stdout
			}
			if len(got) != tc.capped {
				t.Errorf("kept %d bytes, want exactly the cap of %d", len(got), tc.capped)
			}
			want := bytes.Repeat(pattern, tc.capped/len(pattern)+1)[:min(tc.capped, len(got))]
			if !bytes.Equal(got[:len(want)], want) {
				t.Errorf("the kept bytes are not the first %d bytes the program wrote", len(want))
			}
			if !truncated {
				t.Errorf("the truncated flag of the capped stream is not set")
			}
			if len(other) != 0 {
				t.Errorf("the other stream has %d bytes, want none", len(other))
			}
			if elapsed >= 5*time.Second || r.WallTime >= 3*time.Second {
				t.Errorf("an output flood took %s (wall %s) to stop: the cap must kill the run at once", elapsed, r.WallTime)
			}
		})
	}
}

func TestTmpfsFull(t *testing.T) {
	requireSandbox(t)
	for _, dir := range []string{"/tmp", "/workspace", "/dev/shm"} {
		t.Run(strings.ReplaceAll(dir[1:], "/", "_"), func(t *testing.T) {
			r, code := runPy(t, fmt.Sprintf(`import errno, os
path = %q + "/fill"
fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
block, total, err = b"z" * (1 << 20), 0, None
while total < 64 << 20:
    try:
        total += os.write(fd, block)
    except OSError as ex:
        err = ex.errno
        break
os.close(fd)
os.remove(path)
print(errno.errorcode.get(err, err), total)
`, dir), "--tmpfs", "8MiB", "--timeout", "10s")
			wantStatus(t, r, code, "ok", 0)
			var name string
			var total int64
			if _, err := fmt.Sscan(string(r.Stdout), &name, &total); err != nil {
				t.Fatalf("unexpected output %q: %v\n%s", r.Stdout, err, r)
			}
			if name != "ENOSPC" && name != "EFBIG" {
				t.Errorf("filling %s with --tmpfs 8MiB ended with %s, want ENOSPC (or EFBIG)", dir, name)
			}
			if total < 7*mib || total > 8*mib {
				t.Errorf("wrote %d bytes (%.2f MiB) to %s before the error, want about 8 MiB", total, float64(total)/mib, dir)
			}
		})
	}
}

func TestFileSizeLimit(t *testing.T) {
	requireSandbox(t)
	t.Run("python_EFBIG", func(t *testing.T) {
		r, code := runPy(t, `import errno, os
fd = os.open("big", os.O_WRONLY | os.O_CREAT, 0o600)
total, err = 0, None
while total < 2 << 20:
    try:
        total += os.write(fd, b"y" * (256 << 10))
    except OSError as ex:
        err = ex.errno
        break
os.close(fd)
print(errno.errorcode.get(err, err), total, os.path.getsize("big"))
os.remove("big")
`, "--file-size", "1MiB")
		wantStatus(t, r, code, "ok", 0)
		if got, want := strings.TrimSpace(string(r.Stdout)), fmt.Sprintf("EFBIG %d %d", mib, mib); got != want {
			t.Errorf("writing 2 MiB with --file-size 1MiB: got %q, want %q (EFBIG at exactly 1 MiB)", got, want)
		}
	})
	t.Run("SIGXFSZ", func(t *testing.T) {
		// head does not ignore SIGXFSZ: the kernel kills it, and the
		// status says why.
		r, code := runJSON(t, runSpec{name: "big.bash", code: "exec /usr/bin/head -c 2097152 /dev/zero > big\n", flags: []string{"--file-size", "1MiB"}})
		wantStatus(t, r, code, "signaled", 128+25)
		if r.Signal != 25 || r.SignalName != "SIGXFSZ" {
			t.Errorf("signal = %d %q, want 25 SIGXFSZ", r.Signal, r.SignalName)
		}
		if !strings.Contains(r.Reason, "1MiB") {
			t.Errorf("reason %q does not name the 1MiB file size limit", r.Reason)
		}
	})
}

func TestGrandchildHoldingStdout(t *testing.T) {
	requireSandbox(t)
	token, flags := tokenFlags()
	start := time.Now()
	r, code := runPy(t, `import subprocess
subprocess.Popen(["/usr/bin/sleep", "100"])
print("main done")
`, append(flags, "--timeout", "10s")...)
	elapsed := time.Since(start)
	wantStatus(t, r, code, "ok", 0)
	if string(r.Stdout) != "main done\n" {
		t.Errorf("stdout = %q, want %q", r.Stdout, "main done\n")
	}
	if r.WallTime >= 3*time.Second || elapsed >= 5*time.Second {
		t.Errorf("the run took %s (sandboxctl %s): a grandchild holding stdout open kept it waiting", r.WallTime, elapsed)
	}
	requireNoneLeft(t, token)
}

// TestTmpfsChargedToMemory: tmpfs pages are memory. A run may not store
// more in /tmp (or the workspace) than its memory limit, whatever the
// tmpfs size says.
func TestTmpfsChargedToMemory(t *testing.T) {
	requireSandbox(t)
	for _, dir := range []string{"/tmp", "/workspace"} {
		t.Run(dir[1:], func(t *testing.T) {
			r, code := runPy(t, fmt.Sprintf(`import errno, os
fd = os.open(%q + "/fill", os.O_WRONLY | os.O_CREAT, 0o600)
total = 0
try:
    while total < 200 << 20:
        total += os.write(fd, b"m" * (1 << 20))
        if total %% (8 << 20) == 0:
            print(total, flush=True)
except OSError as ex:
    print("error", errno.errorcode.get(ex.errno), total, flush=True)
else:
    print("wrote", total, flush=True)
`, dir), "--memory", "64MiB", "--tmpfs", "512MiB", "--timeout", "10s")
			if strings.Contains(string(r.Stdout), "wrote") {
				t.Errorf("stored 200 MiB in %s under a 64MiB memory limit: tmpfs pages are not charged to the run\n%s", dir, r)
			}
			if r.Status != "memory_limit" && !strings.Contains(string(r.Stdout), "error") {
				t.Errorf("status = %q: want memory_limit, or the program told of an error\n%s", r.Status, r)
			}
			if r.Status == "memory_limit" && code != 122 {
				t.Errorf("exit code = %d, want 122 for memory_limit", code)
			}
			if r.PeakMemory > 64*mib+4*mib {
				t.Errorf("peak_memory_bytes = %d, above the 64MiB limit", r.PeakMemory)
			}
			t.Logf("status %s, peak %.1f MiB, last output %q", r.Status, float64(r.PeakMemory)/mib, lastLine(r.Stdout))
		})
	}
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// TestOrphansAreReaped: init reaps the orphans reparented to it, so
// zombies never pile up against the pids limit. 200 short-lived orphans
// under --pids 16 all start.
func TestOrphansAreReaped(t *testing.T) {
	requireSandbox(t)
	r, code := runPy(t, `import os, time
failed = 0
for i in range(200):
    try:
        pid = os.fork()
    except OSError:
        failed += 1
        time.sleep(0.01)
        continue
    if pid == 0:
        # The child forks an orphan and leaves; the orphan exits at once.
        try:
            if os.fork() == 0:
                os._exit(0)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
print("failed forks:", failed)
`, "--pids", "16", "--timeout", "20s")
	wantStatus(t, r, code, "ok", 0)
	if got := strings.TrimSpace(string(r.Stdout)); got != "failed forks: 0" {
		t.Errorf("%s of 200 sequential forks under --pids 16: orphaned zombies are not reaped", got)
	}
}

func TestOpenFilesLimit(t *testing.T) {
	requireSandbox(t)
	r, code := runPy(t, `import errno, os
fds = []
try:
    for i in range(100):
        fds.append(os.open("/dev/null", os.O_RDONLY))
except OSError as ex:
    print(errno.errorcode[ex.errno], max(fds) + 1)
else:
    print("opened", len(fds))
`, "--open-files", "32")
	wantStatus(t, r, code, "ok", 0)
	if got := strings.TrimSpace(string(r.Stdout)); got != "EMFILE 32" {
		t.Errorf("opening 100 files with --open-files 32: got %q, want %q", got, "EMFILE 32")
	}
}

// TestCPUBandwidth: --cpus 0.5 gives a busy loop about half of one CPU.
func TestCPUBandwidth(t *testing.T) {
	requireSandbox(t)
	r, code := runPy(t, "while True:\n    pass\n", "--cpus", "0.5", "--timeout", "2s")
	wantStatus(t, r, code, "timeout", 124)
	share := float64(r.CPUTime) / float64(r.WallTime)
	if share < 0.3 || share > 0.7 {
		t.Errorf("a busy loop with --cpus 0.5 used %s of CPU in %s of wall time (%.2f of a CPU), want about 0.5", r.CPUTime, r.WallTime, share)
	}
}

// TestRlimitsCannotBeRaised: every rlimit the sandbox sets is a hard limit.
func TestRlimitsCannotBeRaised(t *testing.T) {
	requireSandbox(t)
	r, code := runPy(t, `import resource
for name in ["RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_CORE", "RLIMIT_STACK", "RLIMIT_SIGPENDING", "RLIMIT_MSGQUEUE", "RLIMIT_MEMLOCK"]:
    res = getattr(resource, name)
    soft, hard = resource.getrlimit(res)
    try:
        resource.setrlimit(res, (hard + 1 if hard != resource.RLIM_INFINITY else hard, resource.RLIM_INFINITY))
    except (ValueError, OSError) as ex:
        print(name, "held", soft, hard)
    else:
        print(name, "RAISED", resource.getrlimit(res))
`, "--file-size", "1MiB")
	wantStatus(t, r, code, "ok", 0)
	lines := strings.Split(strings.TrimSpace(string(r.Stdout)), "\n")
	if len(lines) != 8 {
		t.Fatalf("unexpected output:\n%s", r.Stdout)
	}
	for _, l := range lines {
		if strings.Contains(l, "RAISED") {
			t.Errorf("the sandboxed program raised its hard limit: %s", l)
		}
		if f := strings.Fields(l); len(f) == 4 && f[3] == "-1" {
			t.Errorf("no hard limit at all: %s", l)
		}
	}
	if !slices.Contains(lines, fmt.Sprintf("RLIMIT_FSIZE held %d %d", mib, mib)) || !slices.Contains(lines, "RLIMIT_CORE held 0 0") {
		t.Errorf("RLIMIT_FSIZE is not --file-size 1MiB or RLIMIT_CORE not 0:\n%s", r.Stdout)
	}
	for _, want := range []string{"RLIMIT_SIGPENDING held 1024 1024", "RLIMIT_MSGQUEUE held 819200 819200", "RLIMIT_MEMLOCK held 8388608 8388608"} {
		if !slices.Contains(lines, want) {
			t.Errorf("the run's per-user rlimits are not its own (want %q):\n%s", want, r.Stdout)
		}
	}
}
