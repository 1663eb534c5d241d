package tests

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/sandboxd/sandboxd/internal/isolate"
)

// procView is what the program of TestAttackHostFactsHidden reports.
type procView struct {
	Files     map[string]string   `json:"files"`
	Dirs      map[string][]string `json:"dirs"`
	Mountinfo string              `json:"mountinfo"`
	Errors    map[string]string   `json:"errors"`
	CPUCount  int                 `json:"cpu_count"`
	PoolSum   int                 `json:"pool_sum"`
	Free      string              `json:"free"`
	Uptime    string              `json:"uptime"`
	Numpy     string              `json:"numpy"`
	Clocks    [2]float64          `json:"clocks"`
}

// procViewProgram reads the files of /proc that tell a tenant about the
// host, then runs ordinary programs that read /proc (os.cpu_count, a
// multiprocessing pool, free(1), uptime(1), numpy if the host has it).
const procViewProgram = `import json, os, subprocess, multiprocessing, time
files, dirs, errors = {}, {}, {}
for p in ["cmdline", "config.gz", "meminfo", "loadavg", "uptime", "sys/kernel/random/boot_id",
          "partitions", "diskstats", "swaps", "interrupts", "keys", "timer_list", "sched_debug", "kcore"]:
    try:
        with open("/proc/" + p, "rb") as f:
            files[p] = f.read(1 << 16).decode("latin-1")
    except FileNotFoundError:
        pass
    except OSError as ex:
        errors[p] = repr(ex)
for d in ["acpi", "asound", "scsi", "pressure"]:
    if os.path.isdir("/proc/" + d):
        dirs[d] = os.listdir("/proc/" + d)
try:
    open("/proc/sys/kernel/hostname", "w").write("host")
    errors["write /proc/sys"] = "succeeded"
except OSError as ex:
    pass
with multiprocessing.Pool(2) as pool:
    pool_sum = sum(pool.map(abs, range(-10, 10)))
try:
    import numpy
    np = "numpy %s: %s" % (numpy.__version__, numpy.arange(4).sum())
except ImportError:
    np = "not installed"
print(json.dumps({
    "files": files, "dirs": dirs, "errors": errors,
    "mountinfo": open("/proc/self/mountinfo").read(),
    "cpu_count": os.cpu_count(), "pool_sum": pool_sum,
    "free": subprocess.run(["free", "-k"], capture_output=True, text=True).stdout,
    "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout,
    "numpy": np,
    "clocks": [time.clock_gettime(time.CLOCK_MONOTONIC), time.clock_gettime(time.CLOCK_BOOTTIME)],
}))
`

// TestAttackHostFactsHidden: the host's boot command line, kernel config,
// boot id, memory, load, uptime (in /proc and in the clocks) and block
// devices are not readable inside;
// meminfo shows the run's memory limit; ordinary programs that read /proc
// still work. Each value is compared with the host's own, read here.
func TestAttackHostFactsHidden(t *testing.T) {
	requireSandbox(t)
	r, exit := runJSON(t, runSpec{code: procViewProgram, flags: []string{"--memory", "96MiB", "--timeout", "30s"}})
	if r.Status != "ok" || exit != 0 {
		t.Fatalf("the program failed (status %s, exit %d)\n%s", r.Status, exit, r)
	}
	var v procView
	if err := json.Unmarshal(r.Stdout, &v); err != nil {
		t.Fatalf("decode the program's report: %v\n%s", err, r)
	}
	for p, e := range v.Errors {
		t.Errorf("/proc/%s: %s (a masked file reads as empty, it does not fail)", p, e)
	}
	for _, p := range []string{"cmdline", "config.gz", "partitions", "diskstats", "swaps", "interrupts", "keys", "timer_list", "sched_debug", "kcore"} {
		host, err := os.ReadFile("/proc/" + p)
		if err != nil || len(host) == 0 {
			continue // not on this kernel, or nothing to hide
		}
		if got, ok := v.Files[p]; !ok || got != "" {
			t.Errorf("/proc/%s inside is %q, want it masked (empty); the host's has %d bytes", p, clip(got), len(host))
		}
	}
	for d, ents := range v.Dirs {
		if len(ents) > 0 {
			t.Errorf("/proc/%s inside lists %v, want an empty mask", d, ents)
		}
	}
	hostBoot := strings.TrimSpace(readHost(t, "/proc/sys/kernel/random/boot_id"))
	boot := strings.TrimSpace(v.Files["sys/kernel/random/boot_id"])
	if boot == hostBoot || len(boot) != 36 || strings.Count(boot, "-") != 4 {
		t.Errorf("boot_id inside is %q, want a UUID of the sandbox's own (host's is %s)", boot, hostBoot)
	}
	if got, want := meminfoKB(v.Files["meminfo"], "MemTotal"), int64(96*1024); got != want {
		t.Errorf("MemTotal inside is %d kB, want the run's limit %d kB (host's is %d kB)", got, want, meminfoKB(readHost(t, "/proc/meminfo"), "MemTotal"))
	}
	if host := readHost(t, "/proc/loadavg"); v.Files["loadavg"] == host || !strings.HasPrefix(v.Files["loadavg"], "0.00 0.00 0.00 ") {
		t.Errorf("loadavg inside is %q, want the sandbox's zero load, not the host's %q", v.Files["loadavg"], host)
	}
	up, _ := strconv.ParseFloat(strings.Fields(v.Files["uptime"] + " x")[0], 64)
	hostUp, _ := strconv.ParseFloat(strings.Fields(readHost(t, "/proc/uptime"))[0], 64)
	if up >= 1 || hostUp < 1 {
		t.Errorf("uptime inside is %q, want none of the host's %.0f s", v.Files["uptime"], hostUp)
	}
	// The clocks count from the sandbox's start (a time namespace), not
	// from the host's boot.
	if hostUp > 120 && (v.Clocks[0] > 60 || v.Clocks[1] > 60) {
		t.Errorf("CLOCK_MONOTONIC %.0f s and CLOCK_BOOTTIME %.0f s inside, want the sandbox's own few seconds, not the host's uptime %.0f s", v.Clocks[0], v.Clocks[1], hostUp)
	}
	checkMountinfo(t, v.Mountinfo)
	// The masked directories are one empty tmpfs, bound to each: every
	// superblock costs each memory cgroup of the host kernel memory.
	masks := map[string][]string{}
	for _, line := range strings.Split(v.Mountinfo, "\n") {
		f := strings.Fields(line)
		if i := slices.Index(f, "-"); i > 4 && i+2 < len(f) && f[i+1] == "tmpfs" && f[i+2] == "tmpfs" && strings.HasPrefix(f[4], "/proc/") {
			masks[f[2]] = append(masks[f[2]], f[4])
		}
	}
	if len(masks) > 1 {
		t.Errorf("the masked /proc directories are %d tmpfs superblocks (%v), want one bound to each", len(masks), masks)
	}

	// Ordinary programs still work, and see the sandbox's figures.
	if want := hostCPUs(t); v.CPUCount != want || v.PoolSum != 100 {
		t.Errorf("os.cpu_count() = %d (host %d), pool sum %d (want 100)", v.CPUCount, want, v.PoolSum)
	}
	if !strings.Contains(v.Free, strconv.Itoa(96*1024)) {
		t.Errorf("free -k does not show the run's limit:\n%s", v.Free)
	}
	if !strings.Contains(v.Uptime, "load average: 0.00, 0.00, 0.00") {
		t.Errorf("uptime(1) output %q, want the sandbox's zero load", v.Uptime)
	}
	t.Logf("numpy: %s; free:\n%s", v.Numpy, v.Free)
}

// checkMountinfo: the run's mountinfo names neither the daemon's state
// directory nor the host's devtmpfs (whose size is half the host's RAM),
// nor any block device of the host, by name or by number: the read-only
// system binds show the source "sandbox" (nsinit's hostView).
func checkMountinfo(t *testing.T, mi string) {
	t.Helper()
	for _, bad := range []string{"/run/sandboxd", "/var/lib/sandboxd", "runs/", "devtmpfs"} {
		if strings.Contains(mi, bad) {
			t.Errorf("mountinfo inside names %q:\n%s", bad, mi)
		}
	}
	names, numbers := isolate.HostDevices(readHost(t, "/proc/self/mountinfo"))
	if len(names) == 0 {
		t.Fatalf("the host's mountinfo names no /dev/ source: nothing to look for")
	}
	for _, line := range strings.Split(mi, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		if numbers[f[2]] {
			t.Errorf("mountinfo inside shows the host device number %s: %s", f[2], line)
		}
		for name := range names {
			if strings.Contains(line, name) {
				t.Errorf("mountinfo inside names the host device %s: %s", name, line)
			}
		}
	}
}

func readHost(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read the host's %s: %v", path, err)
	}
	return string(b)
}

// meminfoKB returns a meminfo field in kB, or -1.
func meminfoKB(meminfo, key string) int64 {
	for _, line := range strings.Split(meminfo, "\n") {
		k, rest, ok := strings.Cut(line, ":")
		if ok && k == key {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err == nil {
				return n
			}
		}
	}
	return -1
}

// hostCPUs is the host's online CPU count, as the sandbox should see it.
func hostCPUs(t *testing.T) int {
	t.Helper()
	b := bytes.TrimSpace([]byte(readHost(t, "/sys/devices/system/cpu/online")))
	n := 0
	for _, r := range strings.Split(string(b), ",") {
		lo, hi, ok := strings.Cut(r, "-")
		a, _ := strconv.Atoi(lo)
		z := a
		if ok {
			z, _ = strconv.Atoi(hi)
		}
		n += z - a + 1
	}
	return n
}

func clip(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}

// TestRunWithMountsUnderEtc: where /etc has mounts below it, as in every
// container (the runtime binds /etc/hosts, /etc/hostname and
// /etc/resolv.conf), a run still starts. Those mounts are locked in the
// run's user namespace and the kernel refuses /etc as an overlay layer
// (EINVAL), so the files the run sees from /etc are plainly bound. Found
// by tests/k8s: every run in a pod failed with "mount an overlay of /etc:
// invalid argument".
func TestRunWithMountsUnderEtc(t *testing.T) {
	requireSandbox(t)
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Fatalf("unshare (util-linux) is missing: %v", err)
	}
	script := writeScript(t, "etc.py", "print(len(open('/etc/ld.so.cache', 'rb').read()) > 0)\n")
	// sandboxctl in a mount namespace of its own with /etc/hostname
	// bound over itself: the host's mounts are not touched. The shell
	// runs a fixed script; the paths come as its arguments.
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "--",
		"sh", "-c", `mount --bind /etc/hostname /etc/hostname && exec "$0" run "$1"`, sandboxctl, script)
	out, err := cmd.CombinedOutput()
	if err != nil || string(out) != "True\n" {
		t.Fatalf("a run under an /etc with a mount below it: %v\n%s", err, out)
	}
}

// TestSandboxSuperblocks: a sandbox makes few file systems of its own.
// Every superblock alive costs each memory cgroup of the host kernel
// memory, until a reboot, for every one made at the busiest moment
// (RATIONALE, "Every memory cgroup pays for every superblock"), so with
// thousands of sessions each superblock a sandbox makes is paid thousands
// of times over. Counted by device number in the run's mountinfo (mqueue,
// which the IPC namespace makes, is not mounted there): 19 before /etc's
// directories shared an overlay and /dev and the /proc masks stopped
// being tmpfs of their own, 10 after.
func TestSandboxSuperblocks(t *testing.T) {
	requireSandbox(t)
	// A host /etc with mounts below it (a container's /etc/hosts) has
	// each directory overlaid on its own, by design (nsinit's hostView).
	for _, line := range strings.Split(readHost(t, "/proc/self/mountinfo"), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], "/etc/") {
			t.Skipf("requires a host /etc with no mount below it (this host has %s): below such a mount each /etc directory is overlaid on its own, by design, and the bound of 10 does not apply", f[4])
		}
	}
	r, exit := runJSON(t, runSpec{code: `
devs = {}
for line in open("/proc/self/mountinfo"):
    f = line.split()
    devs.setdefault(f[2], []).append(f[4])
for d, points in sorted(devs.items()):
    print(d, " ".join(points))
`})
	if r.Status != "ok" || exit != 0 {
		t.Fatalf("the program failed (status %s, exit %d)\n%s", r.Status, exit, r)
	}
	lines := strings.Split(strings.TrimSpace(string(r.Stdout)), "\n")
	if len(lines) > 10 {
		t.Errorf("the sandbox shows %d superblocks, want at most 10:\n%s", len(lines), r.Stdout)
	}
}
