// Command pool measures throughput through a real daemon with a warm pool
// sized by demand: `print(1)`, n runs at concurrency 2 and then 8, against
// bare /usr/bin/python3 processes at the same concurrency, measured in the
// same run. For each it prints runs per second, p50 and p99 of a run's
// latency, the runs that started cold (all of them, and those of the
// second half, once the pool has adapted), the CPU each run cost (in
// all, and the daemon's, its spawner's and its fork server's own, read
// from /proc; and the whole host's busy time per run, which no renewal
// of a fork server can move between columns), the pool's state,
// and the machine's load average. It builds sandboxd and must run as root:
//
//	go run ./bench/pool            # 2000 runs of each
//	go run ./bench/pool -n 300     # a quick look
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const code = "print(1)"

func main() {
	n := flag.Int("n", 2000, "runs at each concurrency, for each of bare and the daemon")
	conc := flag.String("c", "2,8", "concurrencies, comma-separated")
	warm := flag.String("warm", "python=2", "the daemon's --warm")
	extra := flag.String("daemon-args", "", "more sandboxd serve arguments, space-separated (no shell)")
	bin := flag.String("bin", "", "directory holding sandboxd and sandboxd-init (default: build them); a kept build lets perf name their symbols")
	flag.Parse()
	var cs []int
	for _, f := range strings.Split(*conc, ",") {
		c, err := strconv.Atoi(f)
		if err != nil || c < 1 {
			fmt.Fprintln(os.Stderr, "pool: bad -c:", f)
			os.Exit(2)
		}
		cs = append(cs, c)
	}
	if err := bench(*n, cs, *warm, strings.Fields(*extra), *bin); err != nil {
		fmt.Fprintln(os.Stderr, "pool:", err)
		os.Exit(1)
	}
}

// bench measures the daemon in binDir (built into a temporary directory
// when empty).
func bench(n int, cs []int, warm string, extra []string, binDir string) error {
	dir, err := os.MkdirTemp("", "sandboxd-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	// The init binary beside the daemon, as installed: without it every
	// sandbox re-executes the 20 MB daemon (about 15 ms more CPU a start).
	if binDir == "" {
		binDir = dir
		if out, err := exec.Command("go", "build", "-o", dir+"/", "./cmd/sandboxd", "./cmd/sandboxd-init").CombinedOutput(); err != nil {
			return fmt.Errorf("build sandboxd and sandboxd-init: %w\n%s", err, out)
		}
	}
	bin := filepath.Join(binDir, "sandboxd")
	d, err := startDaemon(bin, append([]string{"--warm", warm}, extra...))
	if err != nil {
		return err
	}
	defer d.stop()

	fmt.Printf("print(1), %d runs at each concurrency; %d CPUs; %s; sandboxd --warm %s %s\n",
		n, runtime.NumCPU(), machineState(), warm, strings.Join(extra, " "))
	fmt.Printf("load average before: %s\n\n", loadavg())
	fmt.Printf("%-3s %-8s %9s %9s %9s %7s %11s %12s %12s %12s %12s %12s\n", "c", "", "runs/s", "p50", "p99", "cold", "cold 2nd ½", "host CPU/run", "CPU/run", "daemon/run", "spawner/run", "server/run")
	for _, c := range cs {
		bareCPU, bareHost := childCPU(), hostBusy()
		bare, err := measure(n, c, bareRun)
		if err != nil {
			return fmt.Errorf("bare python3: %w", err)
		}
		bareCPU, bareHost = childCPU()-bareCPU, hostBusy()-bareHost
		fmt.Printf("%-3d %-8s %9.1f %9s %9s %7s %11s %12s %12s %12s %12s %12s\n", c, "bare", bare.rate(), bare.pct(50), bare.pct(99), "-", "-",
			perRun(bareHost, n), perRun(bareCPU, n), "-", "-", "-")

		before, host := d.cpu(), hostBusy()
		dm, err := measure(n, c, d.post)
		if err != nil {
			return fmt.Errorf("daemon: %w", err)
		}
		after, host := d.cpu(), hostBusy()-host
		fmt.Printf("%-3d %-8s %9.1f %9s %9s %7d %11d %12s %12s %12s %12s %12s\n", c, "daemon", dm.rate(), dm.pct(50), dm.pct(99), dm.cold(0), dm.cold(n/2),
			perRun(host, n), perRun(after.total()-before.total(), n), perRun(after.self-before.self, n), perRun(after.spawner-before.spawner, n),
			perRun(after.server-before.server, n))
		fmt.Printf("    daemon/bare: runs/s %.2fx, p50 %.2fx, p99 %.2fx; load average %s\n",
			dm.rate()/bare.rate(), ratio(dm.pct(50), bare.pct(50)), ratio(dm.pct(99), bare.pct(99)), loadavg())
		fmt.Printf("    pool: %s\n", d.pool())
		fmt.Printf("    runs whose sandbox re-executed the daemon (the init binary's EACCES fallback): %d\n\n", reexecs.Swap(0))
	}
	return nil
}

// result is one measured series: each run's latency, in order of
// completion, and whether it was cold.
type result struct {
	took    []time.Duration
	colds   []bool
	elapsed time.Duration
}

func (r *result) rate() float64 { return float64(len(r.took)) / r.elapsed.Seconds() }

func (r *result) pct(p int) time.Duration {
	s := slices.Clone(r.took)
	slices.Sort(s)
	i := max((len(s)*p+99)/100-1, 0)
	return s[i].Round(10 * time.Microsecond)
}

// cold counts the cold runs from the from-th to complete on.
func (r *result) cold(from int) int {
	n := 0
	for _, c := range r.colds[from:] {
		if c {
			n++
		}
	}
	return n
}

// measure runs f n times from c goroutines.
func measure(n, c int, f func() (cold bool, err error)) (*result, error) {
	var (
		mu   sync.Mutex
		res  result
		next atomic.Int64
		wg   sync.WaitGroup
		errs = make(chan error, c)
	)
	start := time.Now()
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				t := time.Now()
				cold, err := f()
				if err != nil {
					errs <- err
					return
				}
				took := time.Since(t)
				mu.Lock()
				res.took = append(res.took, took)
				res.colds = append(res.colds, cold)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	select {
	case err := <-errs:
		return nil, err
	default:
	}
	return &res, nil
}

func bareRun() (bool, error) {
	out, err := exec.Command("/usr/bin/python3", "-c", code).Output()
	if err != nil {
		return false, err
	}
	if string(out) != "1\n" {
		return false, fmt.Errorf("output %q", out)
	}
	return false, nil
}

type daemon struct {
	base string
	cmd  *exec.Cmd
	http *http.Client
}

func startDaemon(bin string, args []string) (*daemon, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, append([]string{"serve", "--listen", addr, "--log-format", "text", "--max-queue", "256"}, args...)...)
	cmd.Stderr = nil
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	d := &daemon{base: "http://" + addr, cmd: cmd, http: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	for range 500 {
		if resp, err := d.http.Get(d.base + "/healthz"); err == nil {
			resp.Body.Close()
			return d, nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	d.stop()
	return nil, errors.New("sandboxd did not come up")
}

func (d *daemon) stop() {
	_ = d.cmd.Process.Signal(os.Interrupt)
	_ = d.cmd.Wait()
}

// reexecs counts the runs whose sandbox re-executed the daemon instead of
// starting the init binary.
var reexecs atomic.Int64

var body = `{"runtime":"python","code":` + strconv.Quote(code) + `}`

func (d *daemon) post() (bool, error) {
	resp, err := d.http.Post(d.base+"/v1/runs", "application/json", strings.NewReader(body))
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	var res struct {
		Status    string `json:"status"`
		Stdout    string `json:"stdout"`
		Isolation struct {
			Warm bool   `json:"warm"`
			Init string `json:"init"`
		} `json:"isolation"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return false, fmt.Errorf("HTTP %d: %w", resp.StatusCode, err)
	}
	if res.Status != "ok" || res.Stdout != "1\n" {
		return false, fmt.Errorf("HTTP %d, result %+v", resp.StatusCode, res)
	}
	if res.Isolation.Init != "sandboxd-init" {
		// The re-exec fallback (RATIONALE, "Cold start-up"): counted, as
		// its figures are not those of the init binary.
		reexecs.Add(1)
	}
	return !res.Isolation.Warm, nil
}

// cpuTimes are the daemon's own CPU time, its live children's own (the
// spawner, which clones the sandboxes' inits for it, and with
// --warm-zygote the fork server, which forks the runs' processes) and
// that of the reaped children of all (every sandbox's init and what ran
// under it, every forked run's process).
type cpuTimes struct{ self, spawner, server, children time.Duration }

func (c cpuTimes) total() time.Duration { return c.self + c.spawner + c.server + c.children }

func (d *daemon) cpu() cpuTimes {
	var c cpuTimes
	c.self, c.children = procCPU(d.cmd.Process.Pid)
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", d.cmd.Process.Pid))
	for _, t := range tasks {
		b, _ := os.ReadFile(t)
		for _, f := range strings.Fields(string(b)) {
			pid, _ := strconv.Atoi(f)
			self, children := procCPU(pid)
			if cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); bytes.Contains(cmd, []byte("--zygote")) {
				c.server += self
			} else {
				c.spawner += self
			}
			c.children += children
		}
	}
	return c
}

// procCPU is pid's own CPU time and that of its reaped children.
func procCPU(pid int) (self, children time.Duration) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0
	}
	// Fields after the command's closing parenthesis: utime is the 14th
	// field of the line, the 12th after it.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	tick := func(i int) time.Duration {
		v, _ := strconv.ParseInt(f[i], 10, 64)
		return time.Duration(v) * time.Second / 100 // USER_HZ
	}
	return tick(11) + tick(12), tick(13) + tick(14)
}

// hostBusy is the time every CPU of the host has spent on anything but
// idling (/proc/stat), this bench's client included: what a run costs the
// machine, the kernel's deferred work (a network namespace's teardown, in
// a kworker) too, and unaffected by which process reaps which. Other work
// on the host counts as well, so it is only as quiet as the host is.
func hostBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	var busy int64
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i != 3 && i != 4 && i < 8 {
			busy += n
		}
	}
	return time.Duration(busy) * time.Second / 100 // USER_HZ
}

// childCPU is the CPU time of this process's reaped children.
func childCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func perRun(d time.Duration, n int) string {
	return (d / time.Duration(n)).Round(100 * time.Microsecond).String()
}

func ratio(a, b time.Duration) float64 { return float64(a) / float64(b) }

// pool is the pool's figures from /metrics.
func (d *daemon) pool() string {
	resp, err := d.http.Get(d.base + "/metrics")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	var parts []string
	for _, line := range strings.Split(buf.String(), "\n") {
		if name, ok := strings.CutPrefix(line, "sandboxd_pool_"); ok && !strings.HasPrefix(line, "#") {
			name = strings.Replace(name, `{runtime="python"}`, "", 1)
			parts = append(parts, strings.Replace(name, " ", "=", 1))
		}
	}
	return strings.Join(parts, " ")
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:3], " ")
}

// machineState says the cgroup version and whether favordynmods is set
// (it makes cgroup v1 migrations cheap, so it changes cold figures).
func machineState() string {
	b, _ := os.ReadFile("/proc/self/mounts")
	v2, fdm := false, false
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		if f[2] == "cgroup2" && f[1] == "/sys/fs/cgroup" {
			v2 = true
		}
		if (f[2] == "cgroup" || f[2] == "cgroup2") && strings.Contains(f[3], "favordynmods") {
			fdm = true
		}
	}
	v := "cgroup v1"
	if v2 {
		v = "cgroup v2"
	}
	return fmt.Sprintf("%s, favordynmods %v", v, fdm)
}
