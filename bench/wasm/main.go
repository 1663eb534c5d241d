// Command wasm measures the wasm backend in one run: compiling each
// module cold and loading it from the on-disk cache; one run (instantiate,
// print, collect) of Python, QuickJS and a tiny WASI module through the
// Runner in each mode, median and p99; the price of WithCloseOnContextDone,
// the same compute loops in ModeWorker (compiled without it) and
// ModeInProcess (with it); and the same Python loops natively
// (/usr/bin/python3) and in wasm, timed inside the interpreter so that
// start-up is not counted.
//
//	go run ./bench/wasm [-n 30] [-tiny 1000] [-cold=false]
//
// It needs scripts/build-wasm-runtimes.sh to have run; without the
// interpreters it measures the tiny module only.
package main

import (
	"bytes"
	"context"
	_ "embed"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/wasm"
	"github.com/sandboxd/sandboxd/internal/workspace"
)

// hello.wasm writes "hello\n" to stdout and "oops\n" to stderr
// (internal/wasm/testdata/hello.wat).
//
//go:embed hello.wasm
var helloWasm []byte

func main() {
	wasm.MaybeRun()
	n := flag.Int("n", 30, "runs of each interpreter case")
	tiny := flag.Int("tiny", 1000, "runs of the tiny module")
	cold := flag.Bool("cold", true, "measure cold compilation (python.wasm takes seconds)")
	flag.Parse()
	if err := measure(context.Background(), *n, *tiny, *cold); err != nil {
		fmt.Fprintln(os.Stderr, "bench/wasm:", err)
		os.Exit(1)
	}
}

func measure(ctx context.Context, n, tinyN int, cold bool) error {
	tmp, err := os.MkdirTemp("", "sandboxd-bench-wasm-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	// The workers run as a uid of their own, which must read the module.
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	hello := filepath.Join(tmp, "hello.wasm")
	if err := os.WriteFile(hello, helloWasm, 0o644); err != nil {
		return err
	}
	cacheDir := filepath.Join(tmp, "cache")
	runners := map[wasm.Mode]*wasm.Runner{}
	for _, m := range []wasm.Mode{wasm.ModeWorker, wasm.ModeInProcess} {
		r, err := wasm.New(ctx, wasm.Config{Mode: m, CacheDir: cacheDir})
		if err != nil {
			return err
		}
		defer r.Close(ctx)
		runners[m] = r
	}
	rd := runners[wasm.ModeWorker].RuntimesDir()
	modules := []struct{ name, path string }{{"tiny (hello.wasm)", hello}}
	interpreters := runners[wasm.ModeWorker].Available("python") == nil && runners[wasm.ModeWorker].Available("quickjs") == nil
	if interpreters {
		modules = append(modules,
			struct{ name, path string }{"quickjs (qjs.wasm)", filepath.Join(rd, "quickjs/qjs.wasm")},
			struct{ name, path string }{"python (python.wasm)", filepath.Join(rd, "python/python.wasm")})
	} else {
		fmt.Printf("interpreters not built (%v): tiny module only\n\n", runners[wasm.ModeWorker].Available("python"))
	}
	fmt.Printf("host: %s, GOMAXPROCS %d, workspaces in %s\n\n", hostCPU(), runtime.GOMAXPROCS(0), runners[wasm.ModeWorker].TempDir())

	if cold {
		fmt.Println("## Compilation (wazero v1.12.0, optimizing compiler)")
		fmt.Printf("%-22s %9s %11s %18s %15s\n", "module", "size", "cold", "cold, close-on-done", "from disk cache")
		for _, m := range modules {
			if err := compileTimes(ctx, m.name, m.path, filepath.Join(tmp, "compile")); err != nil {
				return err
			}
		}
		fmt.Println()
	}

	fmt.Println("## One run: instantiate, run, collect (through Runner.Run, compiled module cached)")
	fmt.Printf("%-34s %12s %12s %10s\n", "case", "median", "p99", "runs")
	cases := []struct {
		name string
		runs int
		exec wasm.Exec
	}{{"tiny module: hello", tinyN, wasm.Exec{Module: hello, Argv: []string{"hello"}}}}
	if interpreters {
		cases = append(cases,
			struct {
				name string
				runs int
				exec wasm.Exec
			}{"quickjs: print(1)", max(n*3, 100), script("quickjs", "main.js", "print(1)")},
			struct {
				name string
				runs int
				exec wasm.Exec
			}{"python: print(1)", n, script("python", "main.py", "print(1)")})
	}
	for _, c := range cases {
		for _, m := range []wasm.Mode{wasm.ModeWorker, wasm.ModeInProcess} {
			d, err := timeRuns(ctx, runners[m], c.exec, c.runs)
			if err != nil {
				return fmt.Errorf("%s (%s): %w", c.name, m, err)
			}
			fmt.Printf("%-34s %12s %12s %10d\n", c.name+" ["+string(m)+"]", round(pct(d, 50)), round(pct(d, 99)), c.runs)
		}
	}
	fmt.Println()
	if !interpreters {
		return nil
	}
	if err := snapshotPairs(ctx, cacheDir, runners[wasm.ModeWorker], n); err != nil {
		return err
	}

	fmt.Println("## Compute: the loop's own time, measured inside the interpreter (median of 3)")
	fmt.Printf("%-34s %12s %12s %12s %9s %9s\n", "loop", "native", "worker", "in-process", "wasm/nat", "cod cost")
	loops := []struct{ name, py, js string }{
		{"python: for i in range(10**6): s += i", "s = 0\nfor i in range(10**6):\n    s += i", ""},
		{"python: sum(range(10**6))", "sum(range(10**6))", ""},
		{"quickjs: for (i < 1e6) s += i", "", "let s = 0; for (let i = 0; i < 1e6; i++) s += i"},
	}
	for _, lp := range loops {
		var native time.Duration
		if lp.py != "" {
			if native, err = nativeLoop(lp.py); err != nil {
				return err
			}
		}
		var in [2]time.Duration
		for i, m := range []wasm.Mode{wasm.ModeWorker, wasm.ModeInProcess} {
			if in[i], err = wasmLoop(ctx, runners[m], lp.py, lp.js); err != nil {
				return fmt.Errorf("%s (%s): %w", lp.name, m, err)
			}
		}
		nat, ratio := "-", "-"
		if native > 0 {
			nat, ratio = round(native).String(), fmt.Sprintf("%.1fx", float64(in[0])/float64(native))
		}
		fmt.Printf("%-34s %12s %12s %12s %9s %9s\n", lp.name, nat, round(in[0]), round(in[1]), ratio,
			fmt.Sprintf("%.1fx", float64(in[1])/float64(in[0])))
	}
	fmt.Println("\nwasm/nat: worker (full-speed wasm) over native CPython 3.11 (Debian's, PGO+LTO);")
	fmt.Println("cod cost: in-process (WithCloseOnContextDone) over worker, the same machine code otherwise.")
	return nil
}

// snapshotPairs times Python's print(1) from a snapshot of its start-up
// (the runner's default) against cold starts (a second worker runner made
// with ColdStarts, its workers on uids and a cgroup parent of their own),
// one run of each per round, alternating which goes first.
func snapshotPairs(ctx context.Context, cacheDir string, warm *wasm.Runner, n int) error {
	cold, err := wasm.New(ctx, wasm.Config{Mode: wasm.ModeWorker, CacheDir: cacheDir, ColdStarts: true,
		WorkerUID: wasm.DefaultWorkerUID + 256, CgroupParent: wasm.DefaultCgroupParent + "-bench-cold"})
	if err != nil {
		return err
	}
	defer cold.Close(ctx)
	if err := cold.Warm(ctx, "python"); err != nil {
		return err
	}
	e := script("python", "main.py", "print(1)")
	e.Limits = limits.Defaults()
	var dw, dc []time.Duration
	warmRuns := 0
	one := func(r *wasm.Runner, d *[]time.Duration) error {
		t := time.Now()
		res, err := r.Run(ctx, e)
		if err != nil {
			return err
		}
		if res.Status != run.StatusOK || string(res.Stdout) != "1\n" {
			return fmt.Errorf("status %s: %s %q %s", res.Status, res.Reason, res.Stdout, res.Stderr)
		}
		*d = append(*d, time.Since(t))
		if res.Isolation.Warm {
			warmRuns++
		}
		return nil
	}
	rounds := max(n, 30)
	for i := range rounds {
		first, second := func() error { return one(warm, &dw) }, func() error { return one(cold, &dc) }
		if i%2 == 1 {
			first, second = second, first
		}
		if err := first(); err != nil {
			return err
		}
		if err := second(); err != nil {
			return err
		}
	}
	fmt.Println("## Python print(1) from a snapshot of its start-up against cold starts (worker, paired rounds)")
	fmt.Printf("%-34s %12s %12s %10s\n", "case", "median", "p99", "runs")
	fmt.Printf("%-34s %12s %12s %10d\n", "cold starts (baseline)", round(pct(dc, 50)), round(pct(dc, 99)), rounds)
	fmt.Printf("%-34s %12s %12s %10d\n", "from a snapshot", round(pct(dw, 50)), round(pct(dw, 99)), rounds)
	fmt.Printf("snapshot / cold, medians: %.2fx; runs that started from a snapshot: %d of %d (the first takes it)\n\n",
		float64(pct(dw, 50))/float64(pct(dc, 50)), warmRuns, rounds)
	return nil
}

// compileTimes compiles path with fresh runtimes: cold into an empty disk
// cache (without and with close-on-done, which is a different machine
// code), then again from the disk cache, as a new process would.
func compileTimes(ctx context.Context, name, path, dir string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	compile := func(cache string, closeOnDone bool) (time.Duration, error) {
		c, err := wazero.NewCompilationCacheWithDir(cache)
		if err != nil {
			return 0, err
		}
		defer c.Close(ctx)
		rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler().WithCompilationCache(c).WithCloseOnContextDone(closeOnDone))
		defer rt.Close(ctx)
		if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
			return 0, err
		}
		t := time.Now()
		cm, err := rt.CompileModule(ctx, b)
		if err != nil {
			return 0, err
		}
		d := time.Since(t)
		return d, cm.Close(ctx)
	}
	cache := filepath.Join(dir, filepath.Base(path))
	coldT, err := compile(cache, false)
	if err != nil {
		return err
	}
	codT, err := compile(cache+"-cod", true)
	if err != nil {
		return err
	}
	var warm []time.Duration
	for range 5 {
		d, err := compile(cache, false)
		if err != nil {
			return err
		}
		warm = append(warm, d)
	}
	fmt.Printf("%-22s %8.1fM %11s %18s %15s\n", name, float64(len(b))/(1<<20), round(coldT), round(codT), round(pct(warm, 50)))
	return nil
}

func script(module, name, src string) wasm.Exec {
	return wasm.Exec{
		Module: module,
		Argv:   []string{module, workspace.Dir + "/" + name},
		Env:    []string{"PYTHONDONTWRITEBYTECODE=1", "HOME=/workspace"},
		Files:  []run.File{{Name: name, Content: []byte(src)}},
	}
}

// timeRuns runs e n times (after one warm-up run) and returns each run's
// duration as the caller sees it.
func timeRuns(ctx context.Context, r *wasm.Runner, e wasm.Exec, n int) ([]time.Duration, error) {
	e.Limits = limits.Defaults()
	var d []time.Duration
	for i := -1; i < n; i++ {
		t := time.Now()
		res, err := r.Run(ctx, e)
		if err != nil {
			return nil, err
		}
		if res.Status != run.StatusOK {
			return nil, fmt.Errorf("status %s: %s %s", res.Status, res.Reason, res.Stderr)
		}
		if i >= 0 {
			d = append(d, time.Since(t))
		}
	}
	return d, nil
}

// nativeLoop times the loop in /usr/bin/python3 (median of 3).
func nativeLoop(py string) (time.Duration, error) {
	var d []time.Duration
	for range 3 {
		out, err := exec.Command("/usr/bin/python3", "-c", timed(py)).Output()
		if err != nil {
			return 0, fmt.Errorf("native python: %w", err)
		}
		v, err := parseNs(out)
		if err != nil {
			return 0, err
		}
		d = append(d, v)
	}
	return pct(d, 50), nil
}

// wasmLoop times the loop in the wasm interpreter (median of 3).
func wasmLoop(ctx context.Context, r *wasm.Runner, py, js string) (time.Duration, error) {
	e := script("python", "main.py", timed(py))
	if js != "" {
		e = script("quickjs", "main.js", "const t = Date.now();\n"+js+";\nprint((Date.now() - t) * 1e6)")
	}
	e.Limits = limits.Defaults()
	e.Limits.Timeout = limits.Duration(2 * time.Minute)
	e.Limits.CPUTime = e.Limits.Timeout
	var d []time.Duration
	for range 3 {
		res, err := r.Run(ctx, e)
		if err != nil {
			return 0, err
		}
		if res.Status != run.StatusOK {
			return 0, fmt.Errorf("status %s: %s %s", res.Status, res.Reason, res.Stderr)
		}
		v, err := parseNs(res.Stdout)
		if err != nil {
			return 0, err
		}
		d = append(d, v)
	}
	return pct(d, 50), nil
}

// timed wraps a Python snippet so that it prints its own run time in ns.
func timed(py string) string {
	return "import time\nt = time.perf_counter_ns()\n" + py + "\nprint(time.perf_counter_ns() - t)\n"
}

func parseNs(b []byte) (time.Duration, error) {
	f, err := strconv.ParseFloat(string(bytes.TrimSpace(b)), 64)
	if err != nil {
		return 0, fmt.Errorf("parse the loop's time %q: %w", b, err)
	}
	return time.Duration(f), nil
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, len(s)*p/100)]
}

func round(d time.Duration) time.Duration {
	switch {
	case d > 100*time.Millisecond:
		return d.Round(time.Millisecond)
	case d > time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

func hostCPU() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}
