// Command cold measures a cold `sandboxctl run` against the floor (issue
// 17): bare `/usr/bin/python3 -c 'print(1)'` and `sh -c 'echo 1'`, the same
// programs through `sandboxctl run` with its init binary (sandboxd-init
// beside it) and with the fallback (SANDBOXD_INIT=reexec: sandboxctl
// re-executes itself as init), and through bwrap --unshare-all when it is
// installed. Every round runs each variant once, in a rotating order, so
// all see the same machine; it prints the median wall and CPU time of
// each, its paired ratio to bare (the median of the per-round ratios),
// the load average before and after, and the phases of one cold run.
// Each measured run comes after -gap of idle time, as a user's run does:
// run back to back, every sandboxctl run but the first would find the
// kernel's cgroup v1 lock still fast from the one before.
//
//	go run ./bench/cold -n 30 [-gap 100ms] [-before OLD_SANDBOXCTL]
//
// It builds sandboxctl and sandboxd-init into a temporary directory (or
// takes them from -bin DIR) and must run as root, as sandboxctl does.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/sandboxd/sandboxd/bench/latency"
)

func main() {
	n := flag.Int("n", 30, "rounds")
	bin := flag.String("bin", "", "directory holding sandboxctl and sandboxd-init (default: build them)")
	before := flag.String("before", "", "another sandboxctl to compare, e.g. one built from an earlier commit")
	flag.DurationVar(&gap, "gap", 100*time.Millisecond, "idle time before each measured run: a cold run is one after a quiet spell, and the kernel's cgroup v1 move by pid is cheap only right after another one")
	flag.Parse()
	if err := measure(*n, *bin, *before); err != nil {
		fmt.Fprintln(os.Stderr, "cold:", err)
		os.Exit(1)
	}
}

// gap is the idle time before each measured run (-gap).
var gap time.Duration

// variant is one command the rounds run.
type variant struct {
	name string
	// base is the bare variant it is compared with ("" for none).
	base string
	argv []string
	env  []string
	// want is its expected stdout.
	want string
	wall []time.Duration
	cpu  []time.Duration
}

func measure(n int, bin, before string) error {
	dir, err := os.MkdirTemp("", "bench-cold-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// The sandbox's uids read the scripts through sandboxctl, not the
	// path; the directory is root's.
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	if bin == "" {
		bin = dir
		for _, cmd := range []string{"sandboxctl", "sandboxd-init"} {
			b := exec.Command("go", "build", "-o", filepath.Join(dir, cmd), "./cmd/"+cmd)
			if out, err := b.CombinedOutput(); err != nil {
				return fmt.Errorf("go build ./cmd/%s (run from the module root): %w\n%s", cmd, err, out)
			}
		}
	}
	ctl := filepath.Join(bin, "sandboxctl")
	py, sh := filepath.Join(dir, "print1.py"), filepath.Join(dir, "echo1.sh")
	if err := os.WriteFile(py, []byte("print(1)\n"), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(sh, []byte("echo 1\n"), 0o644); err != nil {
		return err
	}
	reexec := []string{"SANDBOXD_INIT=reexec"}
	vs := []*variant{
		{name: "bare python3", argv: []string{"/usr/bin/python3", "-c", "print(1)"}, want: "1\n"},
		{name: "bare sh", argv: []string{"/usr/bin/sh", "-c", "echo 1"}, want: "1\n"},
		{name: "sandboxctl python3 (init binary)", base: "bare python3", argv: []string{ctl, "run", py}, want: "1\n"},
		{name: "sandboxctl python3 (reexec)", base: "bare python3", argv: []string{ctl, "run", py}, env: reexec, want: "1\n"},
		{name: "sandboxctl sh (init binary)", base: "bare sh", argv: []string{ctl, "run", sh}, want: "1\n"},
		{name: "sandboxctl sh (reexec)", base: "bare sh", argv: []string{ctl, "run", sh}, env: reexec, want: "1\n"},
		{name: "sandboxctl --help", argv: []string{ctl, "--help"}},
	}
	if before != "" {
		vs = append(vs,
			&variant{name: "before: sandboxctl python3", base: "bare python3", argv: []string{before, "run", py}, want: "1\n"},
			&variant{name: "before: sandboxctl sh", base: "bare sh", argv: []string{before, "run", sh}, want: "1\n"})
	}
	if bw, err := exec.LookPath("bwrap"); err == nil {
		bwrap := []string{bw, "--unshare-all", "--die-with-parent", "--ro-bind", "/usr", "/usr",
			"--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64", "--symlink", "usr/bin", "/bin",
			"--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"}
		vs = append(vs,
			&variant{name: "bwrap python3", base: "bare python3", argv: append(append([]string{}, bwrap...), "/usr/bin/python3", "-c", "print(1)"), want: "1\n"},
			&variant{name: "bwrap sh", base: "bare sh", argv: append(append([]string{}, bwrap...), "/usr/bin/sh", "-c", "echo 1"), want: "1\n"})
	} else {
		fmt.Println("bwrap not installed: no bwrap rows (apt-get install bubblewrap)")
	}
	load0 := loadavg()
	// Warm the page cache and the cgroup hierarchy, unmeasured.
	for range 2 {
		for _, v := range vs {
			if _, _, err := v.once(); err != nil {
				return err
			}
		}
	}
	for round := range n {
		for i := range vs {
			v := vs[(i+round)%len(vs)]
			time.Sleep(gap)
			wall, cpu, err := v.once()
			if err != nil {
				return err
			}
			v.wall, v.cpu = append(v.wall, wall), append(v.cpu, cpu)
		}
	}
	load1 := loadavg()
	byName := map[string]*variant{}
	for _, v := range vs {
		byName[v.name] = v
	}
	fmt.Printf("%d rounds, %v idle before each run; load average before: %s, after: %s; %d CPUs; %s\n\n", n, gap, load0, load1, numCPU(), cgroupState())
	fmt.Printf("%-34s %10s %10s %10s %12s\n", "", "wall p50", "wall p90", "CPU p50", "x bare p50")
	for _, v := range vs {
		ratio := ""
		if b := byName[v.base]; b != nil {
			ratio = fmt.Sprintf("%.2fx", pairedRatio(v.wall, b.wall))
		}
		fmt.Printf("%-34s %10s %10s %10s %12s\n", v.name, ms(pct(v.wall, 50)), ms(pct(v.wall, 90)), ms(pct(v.cpu, 50)), ratio)
	}
	fmt.Println("\ntargets (issue 17): sandboxctl python3 at most 1.3x bare; sandboxctl sh at most 15 ms")
	fmt.Println("\nphases of cold runs (sandboxctl run --verbose, median of 9 each):")
	for _, v := range []*variant{byName["sandboxctl sh (init binary)"], byName["sandboxctl sh (reexec)"]} {
		if err := phases(v); err != nil {
			return err
		}
	}
	return nil
}

// once runs v and returns its wall time and the CPU time of it and every
// process it waited for (the sandbox's init waits for the program, and
// sandboxctl for init).
func (v *variant) once() (time.Duration, time.Duration, error) {
	cmd := exec.CommandContext(context.Background(), v.argv[0], v.argv[1:]...)
	cmd.Env = append(os.Environ(), v.env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w\n%s", v.name, err, errb.String())
	}
	if v.want != "" && out.String() != v.want {
		return 0, 0, fmt.Errorf("%s: stdout %q, want %q\n%s", v.name, out.String(), v.want, errb.String())
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return wall, cpu, nil
}

// phases runs v with --verbose and prints the median of each phase the
// runner logs.
func phases(v *variant) error {
	by := map[string][]time.Duration{}
	var order []string
	for range 9 {
		time.Sleep(gap)
		argv := append([]string{v.argv[0], v.argv[1], "--verbose"}, v.argv[2:]...)
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = append(os.Environ(), v.env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s --verbose: %w\n%s", v.name, err, out)
		}
		if !strings.Contains(string(out), "phases=") {
			return fmt.Errorf("%s --verbose: no phases logged\n%s", v.name, out)
		}
		latency.AddPhases(string(out), by, &order)
	}
	fmt.Printf("  %s:", v.name)
	for _, name := range order {
		fmt.Printf(" %s=%s", name, ms(pct(by[name], 50)))
	}
	fmt.Println()
	return nil
}

// pairedRatio is the median over rounds of a's time over b's.
func pairedRatio(a, b []time.Duration) float64 {
	r := make([]float64, 0, len(a))
	for i := range min(len(a), len(b)) {
		r = append(r, float64(a[i])/float64(b[i]))
	}
	sort.Float64s(r)
	return r[len(r)/2]
}

func pct(ds []time.Duration, p int) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, len(s)*p/100)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d.Microseconds())/1000) }

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func numCPU() int {
	b, _ := os.ReadFile("/sys/devices/system/cpu/online")
	n := 0
	for _, r := range strings.Split(strings.TrimSpace(string(b)), ",") {
		var lo, hi int
		if c, _ := fmt.Sscanf(r, "%d-%d", &lo, &hi); c == 2 {
			n += hi - lo + 1
		} else if c == 1 {
			n++
		}
	}
	return n
}

// cgroupState says the cgroup version in use and whether favordynmods is
// set, the two host settings a cold run's cgroup move depends on.
func cgroupState() string {
	b, _ := os.ReadFile("/proc/mounts")
	v1, fav := false, false
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		if f[2] == "cgroup" {
			v1 = true
		}
		if (f[2] == "cgroup" || f[2] == "cgroup2") && strings.Contains(","+f[3]+",", ",favordynmods,") {
			fav = true
		}
	}
	s := "cgroup v2"
	if v1 {
		s = "cgroup v1"
	}
	if fav {
		return s + ", favordynmods set"
	}
	return s + ", favordynmods not set"
}
