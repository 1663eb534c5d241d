package wasm

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
)

// hammerRun is the i-th run of a mixed load: mostly small modules, some
// hostile (memory balloon, output flood, endless loop), and interpreter
// runs when they are built. check says what is wrong with its result.
func hammerRun(i int, interpreters bool) (Exec, func(*run.Result) error) {
	// Generous: 200 runs share two cores (and CI runs other packages'
	// tests at the same time); only the spinning runs are meant to time out.
	l := testLimits()
	l.Timeout = limits.Duration(30 * time.Second)
	l.CPUTime = l.Timeout
	want := func(st run.Status, stdout string) func(*run.Result) error {
		return func(res *run.Result) error {
			if res.Status != st || (stdout != "" && string(res.Stdout) != stdout) {
				return fmt.Errorf("run %d: got %s stdout %q, want %s %q (%s)", i, res.Status, truncate(res.Stdout), st, stdout, res.Reason)
			}
			return nil
		}
	}
	tiny := func(name string) Exec { return Exec{Module: testdata(name), Argv: []string{name}, Limits: l} }
	switch {
	case interpreters && i%20 == 0:
		e := script("python", "main.py", fmt.Sprintf("print(%d * 2)", i))
		e.Limits = l
		return e, want(run.StatusOK, strconv.Itoa(i*2)+"\n")
	case interpreters && i%20 == 1:
		e := script("quickjs", "main.js", fmt.Sprintf("print(%d * 2)", i))
		e.Limits = l
		return e, want(run.StatusOK, strconv.Itoa(i*2)+"\n")
	}
	switch i % 8 {
	case 0, 1, 2:
		return tiny("hello.wasm"), want(run.StatusOK, "hello\n")
	case 3:
		e := tiny("echo.wasm")
		in := fmt.Sprintf("input of run %d\n", i)
		e.Stdin = strings.NewReader(in)
		return e, want(run.StatusOK, in)
	case 4:
		return tiny("exit.wasm"), want(run.StatusExited, "")
	case 5:
		e := tiny("grow.wasm")
		e.Limits.Memory = 16 * limits.MiB
		return e, want(run.StatusMemoryLimit, "")
	case 6:
		e := tiny("flood.wasm")
		e.Limits.Output = 32 << 10
		return e, want(run.StatusOutputLimit, "")
	default:
		e := tiny("spin.wasm")
		e.Limits.Timeout = limits.Duration(100 * time.Millisecond)
		return e, want(run.StatusTimeout, "")
	}
}

// TestHammer runs 200 runs at once in one process (run it with -race).
func TestHammer(t *testing.T) {
	t.Parallel()
	interpreters := testRunner(t).Available("python") == nil && testRunner(t).Available("quickjs") == nil
	eachMode(t, func(t *testing.T, r *Runner) {
		const n = 200
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				e, check := hammerRun(i, interpreters)
				res, err := r.Run(t.Context(), e)
				if err != nil {
					errs <- fmt.Errorf("run %d: %w", i, err)
					return
				}
				if err := check(res); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}

// TestHostMemoryBounded runs 100 runs, a third of them hostile, and checks
// that the host's heap and RSS come back: no run leaves memory behind. It
// is not parallel: it measures the whole process.
func TestHostMemoryBounded(t *testing.T) {
	requireRuntime(t, "python")
	for _, m := range modes {
		t.Run(string(m), func(t *testing.T) { testHostMemoryBounded(t, runnerFor(t, m)) })
	}
}

func testHostMemoryBounded(t *testing.T, r *Runner) {
	balloon := script("python", "main.py", "x = []\nwhile True:\n    x.append(bytearray(1 << 20))")
	balloon.Limits.Memory = 128 * limits.MiB
	spin := script("python", "main.py", "while True: pass")
	spin.Limits.Timeout = limits.Duration(100 * time.Millisecond)
	flood := script("python", "main.py", "while True: print('y' * 4096)")
	flood.Limits.Output = 256 << 10
	files := script("python", "main.py", "open('out.bin', 'wb').write(bytes(1 << 20))")
	ok := script("python", "main.py", "print(sum(range(10000)))")
	load := []Exec{balloon, ok, spin, ok, flood, files}

	// Warm up: compile, start workers, reach the steady state.
	for _, e := range load {
		mustRun(t, r, e)
	}
	heap0, rss0 := hostMemory()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for i := range 100 {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			mustRun(t, r, load[i%len(load)])
		}()
	}
	wg.Wait()
	heap1, rss1 := hostMemory()
	t.Logf("%s: heap in use %d -> %d MiB, RSS %d -> %d MiB", r.Mode(), heap0>>20, heap1>>20, rss0>>20, rss1>>20)
	// 17 balloons of 128 MiB went through; none may stay.
	if heap1 > heap0+64<<20 {
		t.Errorf("heap in use grew from %d to %d MiB", heap0>>20, heap1>>20)
	}
	if rss1 > rss0+256<<20 {
		t.Errorf("RSS grew from %d to %d MiB", rss0>>20, rss1>>20)
	}
}

// hostMemory is the heap in use and the RSS of this process, after a
// collection that returns what it can to the kernel.
func hostMemory() (heap, rss uint64) {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b, err := os.ReadFile("/proc/self/statm")
	if err == nil {
		f := strings.Fields(string(b))
		if len(f) > 1 {
			pages, _ := strconv.ParseUint(f[1], 10, 64)
			rss = pages * uint64(os.Getpagesize())
		}
	}
	return ms.HeapInuse, rss
}
