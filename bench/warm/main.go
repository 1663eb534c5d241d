// Command warm measures how long `print("hello")` takes from request to
// output, side by side in one run: bare /usr/bin/python3; sandboxctl run
// (cold, in-process); the daemon cold; the daemon warm (a pool of ready
// sandboxes); and bubblewrap with a comparable confinement, where
// installed. Then throughput at concurrency 2 and 8 with the pool. It
// builds the binaries it drives and must run as root:
//
//	go run ./bench/warm -n 40 [-zygote]
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

func main() {
	n := flag.Int("n", 40, "runs of each")
	flag.BoolVar(&zygote, "zygote", false, "the warm daemon's pool forks its runs from a fork server (--warm-zygote)")
	flag.Parse()
	if err := bench(*n); err != nil {
		fmt.Fprintln(os.Stderr, "warm:", err)
		os.Exit(1)
	}
}

const code = `print("hello")`

// zygote: the warm daemon runs with --warm-zygote.
var zygote bool

func bench(n int) error {
	dir, err := os.MkdirTemp("", "sandboxd-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	// The init binary beside them, as installed: without it every sandbox
	// re-executes its parent binary.
	for _, b := range []string{"sandboxctl", "sandboxd", "sandboxd-init"} {
		if out, err := exec.Command("go", "build", "-o", filepath.Join(dir, b), "./cmd/"+b).CombinedOutput(); err != nil {
			return fmt.Errorf("build %s: %v\n%s", b, err, out)
		}
	}
	script := filepath.Join(dir, "hello.py")
	if err := os.WriteFile(script, []byte(code+"\n"), 0o644); err != nil {
		return err
	}
	cold, stopCold, err := daemon(dir, "")
	if err != nil {
		return err
	}
	defer stopCold()
	warm, stopWarm, err := daemon(dir, "python=2")
	if err != nil {
		return err
	}
	defer stopWarm()

	type way struct {
		name string
		run  func() error
	}
	ways := []way{
		{"bare python3", func() error { return runCmd("/usr/bin/python3", "-c", code) }},
		{"sandboxctl run (cold)", func() error { return runCmd(filepath.Join(dir, "sandboxctl"), "run", script) }},
		{"daemon cold", func() error { return post(cold) }},
		{"daemon warm", func() error { return post(warm) }},
	}
	if bw, err := exec.LookPath("bwrap"); err == nil {
		ways = append(ways, way{"bwrap", func() error {
			return runCmd(bw, "--unshare-all", "--die-with-parent", "--new-session", "--ro-bind", "/usr", "/usr",
				"--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
				"--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--", "/usr/bin/python3", "-c", code)
		}})
	}
	for _, w := range ways { // warm up page cache and pools
		if err := w.run(); err != nil {
			return fmt.Errorf("%s: %w", w.name, err)
		}
	}
	times := make([][]time.Duration, len(ways))
	for i := 0; i < n; i++ {
		for j, w := range ways {
			start := time.Now()
			if err := w.run(); err != nil {
				return fmt.Errorf("%s: %w", w.name, err)
			}
			times[j] = append(times[j], time.Since(start))
		}
	}
	bare := pct(times[0], 50)
	fmt.Printf("print(\"hello\"), request to output, %d runs each, interleaved\n\n", n)
	fmt.Printf("%-24s %10s %10s %10s\n", "", "median", "p99", "vs bare")
	for j, w := range ways {
		m := pct(times[j], 50)
		fmt.Printf("%-24s %10s %10s %9.2fx\n", w.name, m, pct(times[j], 99), float64(m)/float64(bare))
	}
	fmt.Printf("\ntargets: daemon warm median below bare (%s); daemon cold within 25ms of bare (%+.1fms)\n",
		bare, float64(pct(times[2], 50)-bare)/1e6)
	fmt.Printf("warm pool: %s\n", poolLine(warm))

	fmt.Printf("\nthroughput, runs/s (%s of work each)\n", "2s")
	fmt.Printf("%-24s %10s %10s\n", "", "c=2", "c=8")
	for _, w := range []way{ways[0], ways[3]} {
		fmt.Printf("%-24s", w.name)
		for _, c := range []int{2, 8} {
			fmt.Printf(" %10.1f", throughput(w.run, c, 2*time.Second))
		}
		fmt.Println()
	}
	fmt.Printf("warm pool after: %s\n", poolLine(warm))
	return nil
}

func runCmd(name string, args ...string) error {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		return err
	}
	if string(out) != "hello\n" {
		return fmt.Errorf("output %q", out)
	}
	return nil
}

// daemon starts sandboxd on a free port, with a warm pool when warm is set.
func daemon(dir, warm string) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	args := []string{"serve", "--listen", addr, "--log-format", "text", "--max-queue", "256"}
	if warm != "" {
		args = append(args, "--warm", warm)
		if zygote {
			args = append(args, "--warm-zygote")
		}
	}
	cmd := exec.Command(filepath.Join(dir, "sandboxd"), args...)
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	}
	base := "http://" + addr
	for i := 0; i < 200; i++ {
		if resp, err := http.Get(base + "/healthz"); err == nil {
			resp.Body.Close()
			return base, stop, nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	return "", nil, fmt.Errorf("sandboxd did not come up")
}

func post(base string) error {
	resp, err := http.Post(base+"/v1/runs", "application/json", strings.NewReader(`{"runtime":"python","code":`+jsonString(code)+`}`))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var res struct {
		Status string `json:"status"`
		Stdout string `json:"stdout"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return err
	}
	if res.Status != "ok" || res.Stdout != "hello\n" {
		return fmt.Errorf("result %+v", res)
	}
	return nil
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func poolLine(base string) string {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	var parts []string
	for _, line := range strings.Split(buf.String(), "\n") {
		if strings.HasPrefix(line, "sandboxd_pool_hits_total") || strings.HasPrefix(line, "sandboxd_pool_misses_total") {
			parts = append(parts, line)
		}
	}
	return strings.Join(parts, ", ")
}

// throughput runs f from c goroutines for d and returns runs per second.
func throughput(f func() error, c int, d time.Duration) float64 {
	var mu sync.Mutex
	count := 0
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < c; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				if err := f(); err != nil {
					fmt.Fprintln(os.Stderr, "run failed:", err)
					return
				}
				mu.Lock()
				count++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return float64(count) / time.Since(start).Seconds()
}

func pct(ds []time.Duration, p int) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p + 99) / 100
	if i > 0 {
		i--
	}
	return s[i].Round(10 * time.Microsecond)
}
