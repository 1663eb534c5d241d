//go:build linux

// Command noisy is the noisy-neighbour benchmark: can one tenant of a
// sandboxd hurt another? In one run (as root) it starts a daemon with two
// tokens, A and B. Tenant B runs a steady workload through the API the
// whole time: print(1) runs and cells of one session, each in a closed
// loop. First B runs alone; then tenant A runs each abuse in turn while B
// goes on; then B runs alone again. For every phase it reports B's success
// rate and p50/p99 latency, and the ratio of the p99 to B alone, with the
// daemon's RSS and open fds sampled over the phase; the last phase shows
// whether the daemon came back to its baseline.
//
// Targets (issue 14): B loses no request; B's p99 stays within 2x of alone;
// the daemon's RSS stays under -rss-bound; RSS and fds return to baseline
// after A stops.
//
// The abusive request bodies are built once, before the first phase, so
// that the bench does not measure its own allocations; the machine's load
// average is printed for every phase, since B's latency on a shared host
// says little without it.
//
//	go run ./bench/noisy [-phase 20s] [-only unread,deep] [-daemon-log FILE]
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
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	tokenA = "tenant-a-noisy"
	tokenB = "tenant-b-steady"
	mib    = 1 << 20
)

func main() {
	phase := flag.Duration("phase", 20*time.Second, "how long each phase lasts")
	only := flag.String("only", "", "comma-separated abuses to run (default: all): "+strings.Join(abuseNames(), ","))
	rssBound := flag.Int("rss-bound", 400, "the daemon RSS target, in MiB")
	daemonLog := flag.String("daemon-log", "", "write the daemon's log to `FILE` (default: discarded)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := bench(ctx, *phase, *only, int64(*rssBound)*mib, *daemonLog); err != nil {
		fmt.Fprintln(os.Stderr, "bench/noisy:", err)
		os.Exit(1)
	}
}

func bench(ctx context.Context, phase time.Duration, only string, rssBound int64, daemonLog string) error {
	if os.Geteuid() != 0 {
		return errors.New("run as root: the sandbox needs it")
	}
	raiseNofile()
	tmp, err := os.MkdirTemp("", "sandboxd-noisy-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	fmt.Println("building sandboxd ...")
	if err := build(ctx, tmp); err != nil {
		return err
	}
	d, err := startDaemon(ctx, tmp, daemonLog)
	if err != nil {
		return err
	}
	defer d.stop()

	b, err := newTenantB(ctx, d)
	if err != nil {
		return err
	}
	samples := newSampler(d.cmd.Process.Pid)
	go samples.run(ctx)
	go b.run(ctx)

	var rows []row
	measure := func(name string, f func(context.Context) string) {
		b.reset()
		samples.reset()
		before := cpuNow(d.cmd.Process.Pid)
		pctx, cancel := context.WithTimeout(ctx, phase)
		note := ""
		if f != nil {
			note = f(pctx)
		}
		<-pctx.Done()
		cancel()
		rows = append(rows, row{name: name, b: b.snapshot(), cpu: cpuNow(d.cmd.Process.Pid).sub(before), rss: samples.maxRSS(), fds: samples.maxFDs(),
			endRSS: samples.lastRSS(), endFDs: samples.lastFDs(), note: note, load: loadAvg(),
			rssSeries: samples.series(func(s *sampler) []int64 { return s.rss }), fdSeries: samples.series(func(s *sampler) []int64 { return s.fds })})
		fmt.Printf("  %-28s done\n", name)
	}
	fmt.Printf("phases of %s; tenant B runs print(1) and session cells throughout; load average %s\n", phase, loadAvg())
	measure("B alone", nil)
	for _, a := range abuses {
		if only != "" && !contains(strings.Split(only, ","), a.short()) {
			continue
		}
		measure("A: "+a.name, func(ctx context.Context) string { return a.run(ctx, d) })
		// Let the daemon release what A held before the next phase.
		time.Sleep(2 * time.Second)
	}
	measure("B alone, after", nil)
	b.stop()
	report(rows, rssBound)
	return nil
}

// ---------------------------------------------------------------------------
// Tenant B

type tenantB struct {
	d       *daemon
	session string
	mu      sync.Mutex
	lat     map[string][]time.Duration // by kind: "run", "cell"
	fails   map[string]int
	quit    chan struct{}
	wg      sync.WaitGroup
}

func newTenantB(ctx context.Context, d *daemon) (*tenantB, error) {
	var info struct {
		ID string `json:"id"`
	}
	if err := d.do(ctx, tokenB, "POST", "/v1/sessions", `{"runtime":"python"}`, &info); err != nil {
		return nil, fmt.Errorf("tenant B's session: %w", err)
	}
	return &tenantB{d: d, session: info.ID, lat: map[string][]time.Duration{}, fails: map[string]int{}, quit: make(chan struct{})}, nil
}

func (b *tenantB) run(ctx context.Context) {
	runBody := `{"runtime":"python","code":"print(1)"}`
	cellBody := `{"code":"n = globals().get('n', 0) + 1\nprint(n)"}`
	loop := func(kind, path, body string, check func([]byte) error) {
		defer b.wg.Done()
		for {
			select {
			case <-b.quit:
				return
			case <-ctx.Done():
				return
			default:
			}
			start := time.Now()
			var raw json.RawMessage
			err := b.d.do(ctx, tokenB, "POST", path, body, &raw)
			if err == nil {
				err = check(raw)
			}
			b.record(kind, time.Since(start), err)
			time.Sleep(50 * time.Millisecond)
		}
	}
	b.wg.Add(2)
	go loop("run", "/v1/runs", runBody, func(raw []byte) error {
		var r struct{ Status, Stdout string }
		if err := json.Unmarshal(raw, &r); err != nil || r.Status != "ok" || r.Stdout != "1\n" {
			return fmt.Errorf("run: status %q stdout %q", r.Status, r.Stdout)
		}
		return nil
	})
	go loop("cell", "/v1/sessions/"+b.session+"/exec", cellBody, func(raw []byte) error {
		var r struct{ Status, Stdout string }
		if err := json.Unmarshal(raw, &r); err != nil || r.Status != "ok" {
			return fmt.Errorf("cell: status %q", r.Status)
		}
		return nil
	})
}

func (b *tenantB) stop() {
	close(b.quit)
	b.wg.Wait()
}

func (b *tenantB) record(kind string, d time.Duration, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil {
		msg := kind + ": " + err.Error()
		if len(msg) > 120 {
			msg = msg[:120] + "..."
		}
		b.fails[msg]++
		return
	}
	b.lat[kind] = append(b.lat[kind], d)
}

func (b *tenantB) reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lat, b.fails = map[string][]time.Duration{}, map[string]int{}
}

type bStats struct {
	ok, failed int
	// p50 and p99 of B's runs and of its cells.
	runP50, runP99, cellP50, cellP99 time.Duration
	fails                            map[string]int
}

func (b *tenantB) snapshot() bStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	runs, cells := b.lat["run"], b.lat["cell"]
	s := bStats{ok: len(runs) + len(cells), fails: b.fails,
		runP50: pct(runs, 50), runP99: pct(runs, 99), cellP50: pct(cells, 50), cellP99: pct(cells, 99)}
	for _, n := range b.fails {
		s.failed += n
	}
	return s
}

// ---------------------------------------------------------------------------
// Tenant A's abuses. Each runs until ctx ends and says in a few words what
// the daemon answered it.

type abuse struct {
	name string
	run  func(context.Context, *daemon) string
}

var abuses = []abuse{
	{"sessions past memory", bigSessions},
	{"unread 64MiB outputs", unreadOutputs},
	{"queued 14MiB execs", queuedExecs},
	{"2000-deep paths", deepPaths},
	{"idle connections", idleConns},
	{"fork bomb runs", forkBombs},
}

// short is the abuse's name for -only: its first word.
func (a abuse) short() string { return strings.Fields(a.name)[0] }

func abuseNames() []string {
	var out []string
	for _, a := range abuses {
		out = append(out, a.short())
	}
	return out
}

// bigSessions opens 4 GiB sessions until the daemon refuses, holds them for
// the phase, then deletes them.
func bigSessions(ctx context.Context, d *daemon) string {
	var ids []string
	codes := map[int]int{}
	for i := 0; i < 16 && ctx.Err() == nil; i++ {
		var info struct {
			ID string `json:"id"`
		}
		err := d.do(ctx, tokenA, "POST", "/v1/sessions", `{"runtime":"python","limits":{"memory":"4GiB"}}`, &info)
		codes[statusOf(err)]++
		if err == nil {
			ids = append(ids, info.ID)
		}
	}
	<-ctx.Done()
	for _, id := range ids {
		_ = d.do(context.Background(), tokenA, "DELETE", "/v1/sessions/"+id, "", nil)
	}
	return fmt.Sprintf("%d opened; answers %v", len(ids), codes)
}

// Tenant A's request bodies, built once before the first phase: built per
// request (60 copies of a 14 MiB cell), they made the bench allocate and
// copy hundreds of MiB while it measured B.
var (
	unreadBody = `{"runtime":"python","code":"import sys\nsys.stdout.write('<' * (64 << 20))","limits":{"output":"64MiB","memory":"512MiB"}}`
	bigCell    = mustJSON(map[string]string{"code": "#" + strings.Repeat("x", 14*mib)})
	deepBody   = mustJSON(map[string]any{"runtime": "python", "files": []map[string]string{{"name": strings.Repeat("a/", 2000) + "main.py", "content": "print(1)"}}})
)

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// unreadOutputs starts four runs that print 64 MiB of '<' (six times that
// as JSON) and never reads the responses.
func unreadOutputs(ctx context.Context, d *daemon) string {
	body := unreadBody
	var conns []net.Conn
	for range 4 {
		c, err := net.Dial("tcp", d.addr)
		if err != nil {
			continue
		}
		fmt.Fprintf(c, "POST /v1/runs HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", d.addr, tokenA, len(body), body)
		// A tiny receive buffer, so the kernel holds little for us and
		// the daemon's writes block.
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetReadBuffer(4096)
		}
		conns = append(conns, c)
	}
	<-ctx.Done()
	for _, c := range conns {
		c.Close()
	}
	return fmt.Sprintf("%d requests left unread", len(conns))
}

// queuedExecs holds A's session busy with a long cell and sends 60 cells of
// 14 MiB each behind it.
func queuedExecs(ctx context.Context, d *daemon) string {
	var info struct {
		ID string `json:"id"`
	}
	if err := d.do(ctx, tokenA, "POST", "/v1/sessions", `{"runtime":"python"}`, &info); err != nil {
		return "no session: " + err.Error()
	}
	defer d.do(context.Background(), tokenA, "DELETE", "/v1/sessions/"+info.ID, "", nil)
	path := "/v1/sessions/" + info.ID + "/exec"
	// The long cell's timeout within the default --max-timeout (5m): one
	// past it is refused, and the 60 cells would then run in turn
	// instead of waiting behind it.
	long := make(chan error, 1)
	go func() {
		long <- d.do(ctx, tokenA, "POST", path, `{"code":"import time\ntime.sleep(3600)","timeout":"5m"}`, nil)
	}()
	for busy := false; !busy; {
		var st struct {
			State string `json:"state"`
		}
		select {
		case err := <-long:
			return fmt.Sprintf("the long cell ended before the others were sent: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
		if err := d.do(ctx, tokenA, "GET", "/v1/sessions/"+info.ID, "", &st); err != nil {
			return "no session state: " + err.Error()
		}
		busy = st.State == "busy"
	}
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	for range 60 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := d.do(ctx, tokenA, "POST", path, bigCell, nil)
			mu.Lock()
			codes[statusOf(err)]++
			mu.Unlock()
		}()
	}
	<-ctx.Done()
	wg.Wait()
	return fmt.Sprintf("answers %v", codes)
}

// deepPaths sends runs whose one file lies 2000 directories deep.
func deepPaths(ctx context.Context, d *daemon) string {
	codes := map[int]int{}
	var worst time.Duration
	for ctx.Err() == nil {
		start := time.Now()
		err := d.do(ctx, tokenA, "POST", "/v1/runs", deepBody, nil)
		if ctx.Err() != nil {
			break
		}
		worst = max(worst, time.Since(start))
		codes[statusOf(err)]++
	}
	return fmt.Sprintf("answers %v, slowest %s", codes, worst.Round(time.Millisecond))
}

// idleConns opens as many keep-alive connections as this process may,
// each after one GET /healthz, and leaves them idle.
func idleConns(ctx context.Context, d *daemon) string {
	var lim syscall.Rlimit
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	n := min(20000, int(lim.Cur)-200)
	var conns []net.Conn
	refused := 0
	req := fmt.Sprintf("GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", d.addr)
	for i := 0; i < n && ctx.Err() == nil; i++ {
		c, err := net.DialTimeout("tcp", d.addr, time.Second)
		if err != nil {
			refused++
			continue
		}
		conns = append(conns, c)
		_, _ = io.WriteString(c, req)
	}
	<-ctx.Done()
	for _, c := range conns {
		c.Close()
	}
	return fmt.Sprintf("%d opened, %d refused at dial (the daemon closes past its caps)", len(conns), refused)
}

// forkBombs runs fork bombs back to back.
func forkBombs(ctx context.Context, d *daemon) string {
	body := `{"runtime":"python","code":"import os\nwhile True:\n    try: os.fork()\n    except OSError: pass","limits":{"timeout":"3s"}}`
	n := 0
	statuses := map[string]int{}
	for ctx.Err() == nil {
		var r struct{ Status string }
		if err := d.do(ctx, tokenA, "POST", "/v1/runs", body, &r); err == nil {
			statuses[r.Status]++
		}
		n++
	}
	return fmt.Sprintf("%d runs: %v", n, statuses)
}

// ---------------------------------------------------------------------------
// The daemon

type daemon struct {
	addr string
	cmd  *exec.Cmd
	log  bytes.Buffer
	http *http.Client
}

// build compiles sandboxd into dir, from the module this bench is in.
func build(ctx context.Context, dir string) error {
	out, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return fmt.Errorf("find the module root: %w", err)
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+"/", "./cmd/sandboxd", "./cmd/sandboxd-init")
	cmd.Dir = strings.TrimSpace(string(out))
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %w\n%s", err, b)
	}
	return nil
}

// startDaemon runs `sandboxd serve` as shipped, but for the two tokens, on
// a free loopback port with a state dir of its own under /run.
func startDaemon(ctx context.Context, dir, logFile string) (*daemon, error) {
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte(tokenA+"\n"+tokenB+"\n"), 0o600); err != nil {
		return nil, err
	}
	state := filepath.Join("/run", "sandboxd-noisy-"+strconv.Itoa(os.Getpid()))
	if err := os.MkdirAll(state, 0o711); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	d := &daemon{addr: addr}
	d.cmd = exec.Command(filepath.Join(dir, "sandboxd"), "serve", "--listen", addr, "--state-dir", state,
		"--token-file", tokens, "--log-format", "text")
	d.cmd.Stdout, d.cmd.Stderr = io.Discard, io.Discard
	if logFile != "" {
		f, err := os.Create(logFile)
		if err != nil {
			return nil, err
		}
		// The child holds its own copy of the fd.
		defer f.Close()
		d.cmd.Stdout, d.cmd.Stderr = f, f
	}
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := d.cmd.Start(); err != nil {
		return nil, err
	}
	d.http = &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	for deadline := time.Now().Add(15 * time.Second); ; {
		if resp, err := d.http.Get("http://" + addr + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return d, nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			d.stop()
			return nil, errors.New("sandboxd did not answer within 15s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (d *daemon) stop() {
	d.http.CloseIdleConnections()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = d.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = d.cmd.Process.Kill()
		<-done
	}
	for _, a := range d.cmd.Args {
		if strings.HasPrefix(a, "/run/sandboxd-noisy-") {
			_ = os.RemoveAll(a)
		}
	}
}

// httpError is a non-2xx answer.
type httpError struct {
	code int
	body string
}

func (e *httpError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.code, e.body) }

// statusOf is the HTTP status an error stands for: 200 for none, 0 for a
// failure below HTTP.
func statusOf(err error) int {
	var he *httpError
	switch {
	case err == nil:
		return 200
	case errors.As(err, &he):
		return he.code
	}
	return 0
}

// do sends one request as token and decodes a 2xx answer into out.
func (d *daemon) do(ctx context.Context, token, method, path, body string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://"+d.addr+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := d.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		return &httpError{resp.StatusCode, strings.TrimSpace(string(b))}
	}
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// ---------------------------------------------------------------------------
// Sampling the daemon

type sampler struct {
	pid      int
	mu       sync.Mutex
	rss, fds []int64
}

func newSampler(pid int) *sampler { return &sampler{pid: pid} }

func (s *sampler) run(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rss := vmRSS(s.pid)
		ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", s.pid))
		s.mu.Lock()
		s.rss, s.fds = append(s.rss, rss), append(s.fds, int64(len(ents)))
		s.mu.Unlock()
	}
}

func (s *sampler) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rss, s.fds = nil, nil
}

func (s *sampler) maxRSS() int64  { return s.pick(func() []int64 { return s.rss }, maxOf) }
func (s *sampler) maxFDs() int64  { return s.pick(func() []int64 { return s.fds }, maxOf) }
func (s *sampler) lastRSS() int64 { return s.pick(func() []int64 { return s.rss }, lastOf) }
func (s *sampler) lastFDs() int64 { return s.pick(func() []int64 { return s.fds }, lastOf) }

// series is a copy of one of s's series.
func (s *sampler) series(of func(*sampler) []int64) []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int64(nil), of(s)...)
}

func (s *sampler) pick(series func() []int64, f func([]int64) int64) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return f(series())
}

func maxOf(v []int64) int64 {
	var m int64
	for _, x := range v {
		m = max(m, x)
	}
	return m
}

func lastOf(v []int64) int64 {
	if len(v) == 0 {
		return 0
	}
	return v[len(v)-1]
}

// vmRSS is a process's resident set in bytes.
func vmRSS(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// raiseNofile lifts this process's fd limit to its hard limit, for the
// idle-connection abuse.
func raiseNofile() {
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
}

// ---------------------------------------------------------------------------
// The report

type row struct {
	name           string
	b              bStats
	rss, fds       int64
	endRSS, endFDs int64
	note           string
	// load is the load average at the phase's end; the series are the
	// daemon's RSS and fds every 250 ms of the phase.
	load                string
	rssSeries, fdSeries []int64
	cpu                 cpuTimes
}

// cpuTimes is where the CPU went: the daemon's own, its reaped children's
// (the sandboxes, each reaped by its init and the init by the daemon) and
// this bench's (both tenants' clients).
type cpuTimes struct{ daemon, sandboxes, bench time.Duration }

func (c cpuTimes) sub(o cpuTimes) cpuTimes {
	return cpuTimes{c.daemon - o.daemon, c.sandboxes - o.sandboxes, c.bench - o.bench}
}

func cpuNow(daemon int) cpuTimes {
	d := procTicks(strconv.Itoa(daemon))
	b := procTicks("self")
	return cpuTimes{daemon: d[0] + d[1], sandboxes: d[2] + d[3], bench: b[0] + b[1]}
}

// procTicks reads utime, stime, cutime and cstime from /proc/pid/stat.
func procTicks(pid string) [4]time.Duration {
	var out [4]time.Duration
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return out
	}
	// The fields after the command's closing parenthesis, from state (3).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return out
	}
	f := strings.Fields(string(b[i+1:]))
	for k := range out {
		if 11+k < len(f) {
			n, _ := strconv.ParseInt(f[11+k], 10, 64)
			out[k] = time.Duration(n) * time.Second / 100 // USER_HZ
		}
	}
	return out
}

func report(rows []row, rssBound int64) {
	alone := rows[0]
	ratio := func(d, base time.Duration) float64 {
		if base <= 0 {
			return 0
		}
		return float64(d) / float64(base)
	}
	ms := func(d time.Duration) string { return d.Round(time.Millisecond).String() }
	fmt.Println()
	fmt.Printf("%-24s %9s %15s %15s %9s %8s %6s %16s  %s\n", "phase", "B ok/all", "run p50/p99", "cell p50/p99", "p99/alone", "RSS max", "fds", "CPU s dmn/sbx/cl", "tenant A")
	allOK, within2x, underRSS := true, true, true
	for _, r := range rows {
		// The worse of the two workloads' p99 ratios.
		x := max(ratio(r.b.runP99, alone.b.runP99), ratio(r.b.cellP99, alone.b.cellP99))
		cpu := fmt.Sprintf("%.1f/%.1f/%.1f", r.cpu.daemon.Seconds(), r.cpu.sandboxes.Seconds(), r.cpu.bench.Seconds())
		fmt.Printf("%-24s %4d/%-4d %15s %15s %8.2fx %5dMiB %6d %16s  %s\n", r.name, r.b.ok, r.b.ok+r.b.failed,
			ms(r.b.runP50)+"/"+ms(r.b.runP99), ms(r.b.cellP50)+"/"+ms(r.b.cellP99), x, r.rss/mib, r.fds, cpu, r.note)
		for msg, n := range r.b.fails {
			fmt.Printf("%24s B failed %d x: %s\n", "", n, msg)
		}
		allOK = allOK && r.b.failed == 0
		within2x = within2x && x <= 2
		underRSS = underRSS && r.rss <= rssBound
	}
	fmt.Println()
	fmt.Println("per phase: load average at its end; the daemon's RSS (MiB) and fds each second")
	for _, r := range rows {
		fmt.Printf("%-24s load %s\n%24s RSS %s\n%24s fds %s\n", r.name, r.load, "", everySecond(r.rssSeries, mib), "", everySecond(r.fdSeries, 1))
	}
	after := rows[len(rows)-1]
	fmt.Println()
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "MISSED"
	}
	fmt.Printf("B lost no request:                 %s\n", verdict(allOK))
	fmt.Printf("B's p99 within 2x of alone:        %s\n", verdict(within2x))
	fmt.Printf("daemon RSS under %d MiB:          %s\n", rssBound/mib, verdict(underRSS))
	back := after.endRSS <= alone.endRSS*3/2+16*mib && after.endFDs <= alone.endFDs+8
	fmt.Printf("back to baseline after A stopped:  %s (RSS %d -> %d MiB, fds %d -> %d)\n", verdict(back),
		alone.endRSS/mib, after.endRSS/mib, alone.endFDs, after.endFDs)
}

// everySecond is every fourth sample (the sampler's period is 250 ms),
// the largest of the four, divided by unit.
func everySecond(v []int64, unit int64) string {
	var out []string
	for i := 0; i < len(v); i += 4 {
		out = append(out, strconv.FormatInt(maxOf(v[i:min(i+4, len(v))])/unit, 10))
	}
	return strings.Join(out, " ")
}

// loadAvg is the machine's 1, 5 and 15 minute load averages.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if strings.TrimSpace(x) == s {
			return true
		}
	}
	return false
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
	return s[i]
}
