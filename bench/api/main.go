//go:build linux

// Command api measures what sandboxd's HTTP API costs, in one run (as root):
// the end-to-end latency of a hello-world Python run through POST /v1/runs
// (plain and ?stream=1) against the same run through `sandboxctl run`, the
// in-process executor (internal/executor, as sandboxd calls it) and bare
// /usr/bin/python3, interleaved so every way sees the same machine noise;
// the daemon's own overhead (HTTP + JSON + admission); and throughput at
// concurrency 1, 2 and 8 through the API, with the daemon's --max-concurrent
// set to the concurrency. It builds sandboxd and sandboxctl into a temporary
// directory, runs the daemon on a loopback port with a state dir of its own
// under /run, and removes both at the end.
//
//	go run ./bench/api [-n 40] [-runs 80]
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sandboxd/sandboxd/internal/executor"
	"github.com/sandboxd/sandboxd/internal/isolate"
	"github.com/sandboxd/sandboxd/internal/isolate/nsinit"
	"github.com/sandboxd/sandboxd/internal/run"
)

const (
	code = "print('hello')\n"
	want = "hello\n"
	// overheadTarget is issue 17's bound on the daemon's own cost per
	// run (the first API issue's was 2 ms).
	overheadTarget = time.Millisecond
)

func main() {
	// The in-process executor's sandboxes re-execute this binary as their
	// init stage: it must take over before anything else runs.
	nsinit.MaybeRun()
	n := flag.Int("n", 40, "latency samples of each way, interleaved")
	runs := flag.Int("runs", 80, "runs per throughput level")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := bench(ctx, *n, *runs); err != nil {
		fmt.Fprintln(os.Stderr, "bench/api:", err)
		os.Exit(1)
	}
}

func bench(ctx context.Context, n, runs int) error {
	if os.Geteuid() != 0 {
		return errors.New("run as root: the sandbox needs it")
	}
	tmp, err := os.MkdirTemp("", "sandboxd-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	// The sandbox's uids traverse the state dir: under /run, not /tmp.
	state, err := os.MkdirTemp("/run", "sandboxd-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(state)
	if err := os.Chmod(state, 0o711); err != nil {
		return err
	}
	fmt.Println("building sandboxd and sandboxctl ...")
	if err := build(ctx, tmp); err != nil {
		return err
	}
	script := filepath.Join(tmp, "hello.py")
	if err := os.WriteFile(script, []byte(code), 0o644); err != nil {
		return err
	}
	x, err := executor.New(executor.Options{Isolate: isolate.Config{StateDir: filepath.Join(state, "inproc")}, Versions: true})
	if err != nil {
		return err
	}
	defer x.Close()
	d, err := startDaemon(ctx, tmp, filepath.Join(state, "daemon"), 1)
	if err != nil {
		return err
	}
	lat, err := latency(ctx, n, script, filepath.Join(tmp, "sandboxctl"), x, d)
	if serr := d.stop(); err == nil {
		err = serr
	}
	if err != nil {
		return err
	}
	var tput []throughputRow
	for _, c := range []int{1, 2, 8} {
		d, err := startDaemon(ctx, tmp, filepath.Join(state, "daemon"), c)
		if err != nil {
			return err
		}
		row, err := throughput(ctx, d, c, max(runs, 10*c))
		if serr := d.stop(); err == nil {
			err = serr
		}
		if err != nil {
			return err
		}
		tput = append(tput, row)
	}
	// The sandbox's init stage is the binary that started it, re-executed:
	// every package init() of that binary runs before init's own code.
	var inits []string
	self, _ := os.Executable()
	for _, b := range []struct{ name, path string }{{"sandboxd", filepath.Join(tmp, "sandboxd")}, {"this bench", self}} {
		if c, err := initCost(ctx, b.path); err == nil {
			inits = append(inits, fmt.Sprintf("%s %s", b.name, c))
		}
	}
	report(n, lat, tput, inits)
	return nil
}

var initRE = regexp.MustCompile(`(?m)^init \S+ @\S+ ms, ([0-9.]+) ms clock`)

// initCost is the total clock time of the package inits of binary, from
// GODEBUG=inittrace=1 (the median of 5 starts).
func initCost(ctx context.Context, binary string) (time.Duration, error) {
	var ds []time.Duration
	for i := 0; i < 5; i++ {
		cmd := exec.CommandContext(ctx, binary, "-h")
		cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		_ = cmd.Run() // -h may exit non-zero; only the trace matters
		var total float64
		for _, m := range initRE.FindAllStringSubmatch(stderr.String(), -1) {
			v, _ := strconv.ParseFloat(m[1], 64)
			total += v
		}
		if total == 0 {
			return 0, errors.New("no init trace")
		}
		ds = append(ds, time.Duration(total*float64(time.Millisecond)))
	}
	return pct(ds, 50), nil
}

// build compiles the two binaries into dir, from the module this bench is in.
func build(ctx context.Context, dir string) error {
	out, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return fmt.Errorf("find the module root: %w", err)
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+"/", "./cmd/sandboxd", "./cmd/sandboxctl", "./cmd/sandboxd-init")
	cmd.Dir = strings.TrimSpace(string(out))
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %w\n%s", err, b)
	}
	return nil
}

// ---------------------------------------------------------------------------
// The daemon

type daemon struct {
	url  string
	cmd  *exec.Cmd
	log  *lockedBuffer
	done chan error
	http *http.Client
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startDaemon runs `sandboxd serve` with concurrency slots and a large
// queue on a free loopback port, and waits until it answers.
func startDaemon(ctx context.Context, dir, state string, concurrency int) (*daemon, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	d := &daemon{url: "http://" + addr, log: &lockedBuffer{}, done: make(chan error, 1)}
	d.cmd = exec.Command(filepath.Join(dir, "sandboxd"), "serve", "--listen", addr, "--state-dir", state, "--log-format", "text",
		"--max-concurrent", strconv.Itoa(concurrency), "--max-queue", "4096")
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	// If the bench dies, the daemon goes too.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := d.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { d.done <- d.cmd.Wait() }()
	d.http = &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := d.http.Get(d.url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return d, nil
			}
		}
		select {
		case err := <-d.done:
			return nil, fmt.Errorf("sandboxd exited (%v):\n%s", err, d.log.String())
		case <-ctx.Done():
			_ = d.stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = d.stop()
			return nil, fmt.Errorf("sandboxd did not answer within 15s:\n%s", d.log.String())
		}
	}
}

// stop ends the daemon with SIGTERM and waits for it.
func (d *daemon) stop() error {
	d.http.CloseIdleConnections()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.done:
		if err != nil {
			return fmt.Errorf("sandboxd: %w\n%s", err, d.log.String())
		}
		return nil
	case <-time.After(15 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
		return errors.New("sandboxd did not stop within 15s of SIGTERM")
	}
}

// apiResult is the part of a result the bench checks.
type apiResult struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Stdout string `json:"stdout"`
}

var body = func() []byte {
	b, _ := json.Marshal(map[string]string{"runtime": "python", "code": code})
	return b
}()

// post runs the program through POST /v1/runs, streamed or not, and
// returns the result.
func (d *daemon) post(ctx context.Context, stream bool) (*apiResult, error) {
	path := "/v1/runs"
	if stream {
		path += "?stream=1"
	}
	req, err := http.NewRequestWithContext(ctx, "POST", d.url+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := d.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("POST %s: %s: %s", path, resp.Status, b)
	}
	var r apiResult
	if !stream {
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			return nil, err
		}
	} else {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			var ev struct {
				Type   string     `json:"type"`
				Result *apiResult `json:"result"`
			}
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				return nil, err
			}
			if ev.Type == "result" && ev.Result != nil {
				r = *ev.Result
			}
		}
		if err := sc.Err(); err != nil {
			return nil, err
		}
	}
	if r.Status != "ok" || r.Stdout != want {
		return nil, fmt.Errorf("POST %s: status %q stdout %q", path, r.Status, r.Stdout)
	}
	return &r, nil
}

// ---------------------------------------------------------------------------
// Latency

// way is one way of running the program.
type way struct {
	name string
	run  func(context.Context) (time.Duration, error)
	ds   []time.Duration
}

type latencies struct {
	ways []*way
	// daemonSide are client latency minus the daemon's own time for the
	// same run (its log's took=, admission to result): HTTP + JSON.
	daemonSide []time.Duration
	// took and wall are the daemon's time per run and the program's wall
	// time in it (its log line); inprocWall the in-process runs' wall.
	took, wall, inprocWall []time.Duration
}

var logRE = regexp.MustCompile(`msg=run id=([0-9a-f]+) .* wall=(\S+) .* took=(\S+)`)

func latency(ctx context.Context, n int, script, sandboxctl string, x *executor.Executor, d *daemon) (*latencies, error) {
	timed := func(f func() error) (time.Duration, error) {
		start := time.Now()
		err := f()
		return time.Since(start), err
	}
	var apiIDs []string
	apiLat := map[string]time.Duration{}
	var inprocWall []time.Duration
	spec := func() *run.Spec {
		return &run.Spec{Runtime: "python", Files: []run.File{{Name: "main.py", Content: []byte(code)}}}
	}
	ways := []*way{
		{name: "bare /usr/bin/python3", run: func(ctx context.Context) (time.Duration, error) {
			return timed(func() error { return expect(exec.CommandContext(ctx, "/usr/bin/python3", script)) })
		}},
		{name: "sandboxctl run", run: func(ctx context.Context) (time.Duration, error) {
			return timed(func() error { return expect(exec.CommandContext(ctx, sandboxctl, "run", script)) })
		}},
		{name: "executor, in-process", run: func(ctx context.Context) (time.Duration, error) {
			return timed(func() error {
				res, err := run.Do(ctx, x, spec(), run.Stream{})
				if err != nil {
					return err
				}
				if res.Status != run.StatusOK || string(res.Stdout) != want {
					return fmt.Errorf("executor: status %s stdout %q", res.Status, res.Stdout)
				}
				inprocWall = append(inprocWall, res.WallTime)
				return nil
			})
		}},
		{name: "POST /v1/runs", run: func(ctx context.Context) (time.Duration, error) {
			var id string
			t, err := timed(func() error {
				r, err := d.post(ctx, false)
				if err == nil {
					id = r.ID
				}
				return err
			})
			apiIDs = append(apiIDs, id)
			apiLat[id] = t
			return t, err
		}},
		{name: "POST /v1/runs?stream=1", run: func(ctx context.Context) (time.Duration, error) {
			return timed(func() error { _, err := d.post(ctx, true); return err })
		}},
	}
	// Warm up every way (page cache, runtime version probe, connections).
	for i := 0; i < 3; i++ {
		for _, w := range ways {
			if _, err := w.run(ctx); err != nil {
				return nil, fmt.Errorf("%s: %w", w.name, err)
			}
		}
	}
	apiIDs, apiLat, inprocWall = nil, map[string]time.Duration{}, nil
	fmt.Printf("latency: %d runs of each way, interleaved ...\n", n)
	for i := 0; i < n; i++ {
		for _, w := range ways {
			dur, err := w.run(ctx)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", w.name, err)
			}
			w.ds = append(w.ds, dur)
		}
	}
	l := &latencies{ways: ways, inprocWall: inprocWall}
	// The daemon logs each run as it answers; give the pipe a moment.
	time.Sleep(200 * time.Millisecond)
	type logged struct{ wall, took time.Duration }
	byID := map[string]logged{}
	for _, m := range logRE.FindAllStringSubmatch(d.log.String(), -1) {
		wall, err1 := time.ParseDuration(m[2])
		took, err2 := time.ParseDuration(m[3])
		if err1 == nil && err2 == nil {
			byID[m[1]] = logged{wall, took}
		}
	}
	for _, id := range apiIDs {
		if lg, ok := byID[id]; ok {
			l.daemonSide = append(l.daemonSide, apiLat[id]-lg.took)
			l.took = append(l.took, lg.took)
			l.wall = append(l.wall, lg.wall)
		}
	}
	return l, nil
}

// expect runs a command that must print want.
func expect(cmd *exec.Cmd) error {
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("%s: %w: %s", cmd.Path, err, ee.Stderr)
		}
		return err
	}
	if string(out) != want {
		return fmt.Errorf("%s printed %q", cmd.Path, out)
	}
	return nil
}

// ---------------------------------------------------------------------------
// Throughput

type throughputRow struct {
	concurrency, runs int
	took              time.Duration
	lat               []time.Duration
}

// throughput runs n programs through the API with c clients at once.
func throughput(ctx context.Context, d *daemon, c, n int) (throughputRow, error) {
	for i := 0; i < c; i++ { // warm up: one connection per client
		if _, err := d.post(ctx, false); err != nil {
			return throughputRow{}, err
		}
	}
	fmt.Printf("throughput: %d runs at concurrency %d ...\n", n, c)
	row := throughputRow{concurrency: c, runs: n}
	jobs := make(chan struct{})
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < c; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				t0 := time.Now()
				_, err := d.post(ctx, false)
				dur := time.Since(t0)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				row.lat = append(row.lat, dur)
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < n; i++ {
		jobs <- struct{}{}
	}
	close(jobs)
	wg.Wait()
	row.took = time.Since(start)
	return row, firstErr
}

// ---------------------------------------------------------------------------
// Report

func report(n int, l *latencies, tput []throughputRow, inits []string) {
	byName := map[string]*way{}
	for _, w := range l.ways {
		byName[w.name] = w
	}
	bare := pct(byName["bare /usr/bin/python3"].ds, 50)
	fmt.Printf("\nEnd-to-end latency of print('hello'), %d runs each, interleaved\n\n", n)
	fmt.Printf("%-26s %10s %10s %10s\n", "", "median", "p99", "x bare")
	for _, w := range l.ways {
		med := pct(w.ds, 50)
		fmt.Printf("%-26s %10s %10s %9.2fx\n", w.name, med, pct(w.ds, 99), float64(med)/float64(bare))
	}
	api, inproc := byName["POST /v1/runs"].ds, byName["executor, in-process"].ds
	diff := pct(api, 50) - pct(inproc, 50)
	paired := make([]time.Duration, len(api))
	for i := range api {
		paired[i] = api[i] - inproc[i]
	}
	fmt.Printf("\nDaemon overhead (HTTP + JSON + admission), target < %s at the median:\n", overheadTarget)
	fmt.Printf("  POST /v1/runs median - in-process executor median:   %10s  %s\n", diff, verdict(diff))
	fmt.Printf("  median of the paired differences (same iteration):   %10s  %s\n", pct(paired, 50), verdict(pct(paired, 50)))
	if len(l.daemonSide) > 0 {
		m := pct(l.daemonSide, 50)
		fmt.Printf("  client latency - the daemon's own time for the run:  %10s  %s  (p99 %s; took= of its log line)\n", m, verdict(m), pct(l.daemonSide, 99))
		fmt.Printf("\nWhere the rest goes (medians): the daemon's executor took %s per run, the program's wall time in it %s;\n", pct(l.took, 50), pct(l.wall, 50))
		fmt.Printf("the in-process executor took %s, the program's wall time in it %s.\n", pct(inproc, 50), pct(l.inprocWall, 50))
	}
	if len(inits) > 0 {
		fmt.Printf("Package init() time of the binary re-executed as the sandbox's init stage: %s.\n", strings.Join(inits, ", "))
	}
	fmt.Printf("\nThroughput through POST /v1/runs (daemon --max-concurrent = clients; %d CPUs)\n\n", numCPU())
	fmt.Printf("%-12s %6s %10s %10s %12s %12s\n", "concurrency", "runs", "time", "runs/s", "median lat", "p99 lat")
	for _, r := range tput {
		fmt.Printf("%-12d %6d %10s %10.1f %12s %12s\n", r.concurrency, r.runs, r.took.Round(time.Millisecond),
			float64(r.runs)/r.took.Seconds(), pct(r.lat, 50), pct(r.lat, 99))
	}
	fmt.Printf("\n(bare python3 serially: %.1f runs/s)\n", 1/bare.Seconds())
}

func verdict(d time.Duration) string {
	if d < overheadTarget {
		return "ok"
	}
	return "OVER TARGET"
}

func numCPU() int {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "\nprocessor") + 1
}

// pct is the p-th percentile (nearest rank).
func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p + 99) / 100
	if i > 0 {
		i--
	}
	return s[i].Round(10 * time.Microsecond)
}
