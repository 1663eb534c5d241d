package wasm

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/elastic/go-seccomp-bpf/arch"

	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/testenv"
)

// confinedRunner is a ModeWorker runner of the test's own, its workers'
// cgroups under a parent of the test's own (checked empty at the end).
func confinedRunner(t *testing.T, cfg Config) *Runner {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Missing(t, "root (workers change uid and get cgroups)", "sudo go test")
	}
	_, parent := testenv.StateDir(t, "wasm")
	cfg.Mode, cfg.CgroupParent = ModeWorker, parent
	if cfg.CacheDir == "" {
		cfg.CacheDir = filepath.Join(os.TempDir(), "sandboxd-wasm-test-cache")
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	r, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return r
}

// procStatus reads /proc/<pid>/status (or a task's) as key: value.
func procStatus(t *testing.T, path string) map[string]string {
	t.Helper()
	m, err := readStatus(path)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestWorkerUnprivileged: a worker runs as its slot's uid and gid in every
// field, with no supplementary groups, no capabilities, no_new_privs and
// the seccomp filter on every thread, inside a memory cgroup of its own
// whose limit is the run's.
func TestWorkerUnprivileged(t *testing.T) {
	t.Parallel()
	r := confinedRunner(t, Config{Workers: 1})
	l := testLimits()
	l.Memory = 32 << 20
	res := mustRun(t, r, Exec{Module: testdata("hello.wasm"), Argv: []string{"hello"}, Limits: l})
	if res.Status != run.StatusOK {
		t.Fatalf("hello: %s", summary(res))
	}
	p := r.exec.(*workerPool)
	w := <-p.idle
	defer func() { p.idle <- w }()
	pid := w.cmd.Process.Pid
	uid := strconv.Itoa(DefaultWorkerUID + w.slot)
	st := procStatus(t, fmt.Sprintf("/proc/%d/status", pid))
	want := map[string]string{
		"Uid": strings.Repeat(uid+"\t", 3) + uid, "Gid": strings.Repeat(uid+"\t", 3) + uid, "Groups": "",
		"CapInh": "0000000000000000", "CapPrm": "0000000000000000", "CapEff": "0000000000000000", "CapAmb": "0000000000000000",
		"NoNewPrivs": "1", "Seccomp": "2",
	}
	for k, v := range want {
		if st[k] != v {
			t.Errorf("worker %d: %s = %q, want %q", pid, k, st[k], v)
		}
	}
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		ts := procStatus(t, fmt.Sprintf("/proc/%d/task/%s/status", pid, task.Name()))
		if ts["Seccomp"] != "2" || ts["NoNewPrivs"] != "1" {
			t.Errorf("thread %s of the worker: Seccomp %s, NoNewPrivs %s: the filter is not on every thread", task.Name(), ts["Seccomp"], ts["NoNewPrivs"])
		}
	}
	cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cg), "/"+filepath.Base(p.cgroups.dir)+"/") {
		t.Errorf("worker %d is not in a cgroup under %s:\n%s", pid, p.cgroups.dir, cg)
	}
	limit, err := readCgroupUint(filepath.Join(w.cg.dir, w.cg.f.limit))
	if err != nil {
		t.Fatal(err)
	}
	if limit > 1<<30 {
		t.Errorf("the worker's cgroup allows %d bytes, want its base plus 32 MiB plus %d", limit, workerSlack)
	}
}

// TestWorkerPolicy: the allowlist lets nothing through that a worker does
// not need and an escape would: processes, sockets, credentials, mounts,
// namespaces, tracing, kernel modules, eBPF.
func TestWorkerPolicy(t *testing.T) {
	a, err := arch.GetInfo("")
	if err != nil {
		t.Skip(err)
	}
	pol := workerPolicy(a)
	var allowed []string
	for _, g := range pol.Syscalls {
		if g.Action == 0x7fff0000 { // SECCOMP_RET_ALLOW
			allowed = append(allowed, g.Names...)
		}
	}
	for _, deny := range []string{"execve", "execveat", "fork", "vfork", "clone3", "socket", "connect", "ptrace",
		"setuid", "setresuid", "setgroups", "capset", "mount", "unshare", "setns", "init_module", "bpf", "kill",
		"ioctl", "keyctl", "userfaultfd", "perf_event_open", "io_uring_setup", "process_vm_writev", "symlinkat"} {
		if slices.Contains(allowed, deny) {
			t.Errorf("the worker allowlist allows %s", deny)
		}
	}
	if _, err := pol.Assemble(); err != nil {
		t.Fatalf("assemble: %v", err)
	}
}

// TestWorkerMemoryAttacks: a guest that grows tables (which are not linear
// memory), declares a huge one, or grows its linear memory, under a 16 MiB
// limit, ends with memory_limit and a peak near the limit, not with a
// worker of gigabytes; meanwhile this process (the daemon) stays within
// 256 MiB of where it started, and a bystander run on another worker
// completes.
//
// Not parallel, for the reason TestCompileBomb is not: the growth is read
// from this process's RSS, which the package's parallel tests grow with
// their own compiles (a CI run saw 412 MiB while every attack was held to
// its 16 MiB in its worker).
func TestWorkerMemoryAttacks(t *testing.T) {
	r := confinedRunner(t, Config{Workers: 2})
	l := testLimits()
	l.Memory = 16 << 20
	l.Timeout = limits.Duration(60 * time.Second)
	l.CPUTime = l.Timeout
	var daemonPeak atomic.Int64
	before := rss(t)
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			daemonPeak.Store(max(daemonPeak.Load(), rss(t)))
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	bound := int64(l.Memory) + workerSlack + 16<<20
	for _, m := range []string{"tablefill.wasm", "bigtable.wasm", "grow.wasm"} {
		start := time.Now()
		res := mustRun(t, r, Exec{Module: testdata(m), Argv: []string{m}, Limits: l})
		t.Logf("%s: %s in %s, peak %d bytes", m, res.Status, time.Since(start).Round(time.Millisecond), res.PeakMemory)
		if res.Status != run.StatusMemoryLimit {
			t.Errorf("%s: %s; want memory_limit", m, summary(res))
		}
		// The CPU time is sampled every 100 ms: the kernel's kill leaves
		// no thread to read it from afterwards.
		if res.WallTime > 300*time.Millisecond && res.CPUTime <= 0 {
			t.Errorf("%s: ran %s and reports no CPU time", m, res.WallTime)
		}
		if res.PeakMemory <= 0 || res.PeakMemory > bound {
			t.Errorf("%s: peak %d bytes, want within (0, %d]", m, res.PeakMemory, bound)
		}
		bystander := mustRun(t, r, Exec{Module: testdata("hello.wasm"), Argv: []string{"hello"}, Limits: testLimits()})
		if bystander.Status != run.StatusOK {
			t.Errorf("a run after %s: %s", m, summary(bystander))
		}
	}
	close(stop)
	<-sampled
	if grew := daemonPeak.Load() - before; grew > 256<<20 {
		t.Errorf("the runner's process grew by %d MiB during the attacks, want at most 256", grew>>20)
	}
	t.Logf("runner RSS: %d MiB before, %d MiB at most during", before>>20, daemonPeak.Load()>>20)
}

// rss is this process's resident set, in bytes.
func rss(t *testing.T) int64 {
	st := procStatus(t, "/proc/self/status")
	kb, _ := strconv.ParseInt(strings.TrimSuffix(st["VmRSS"], " kB"), 10, 64)
	return kb << 10
}

// compileBomb is a module of one function of 8 MB of straight-line code:
// one huge function is what costs a compiler most (its register allocator
// works on the whole function at once).
func compileBomb() []byte {
	op := []byte{0x20, 0, 0x41, 1, 0x6a, 0x21, 0} // local.get 0; i32.const 1; i32.add; local.set 0
	body := []byte{1, 1, 0x7f}                    // one i32 local
	for len(body) < 8<<20 {
		body = append(body, op...)
	}
	body = append(body, 0x0b)
	const n = 1
	funcs, code := uleb(n), uleb(n)
	for range n {
		funcs = append(funcs, 0)
		code = append(code, uleb(len(body))...)
		code = append(code, body...)
	}
	return wasmModule(section(3, funcs), exportSection("_start"), section(10, code))
}

// TestCompileBomb: an 8 MB module run with 16 MiB and one second is
// compiled in a compile worker and stopped there (memory_limit or
// timeout, not started), while this process stays within 256 MiB of where
// it started and the cache within its bound; then a module of another run
// compiles and runs from the same cache.
//
// Not parallel: the growth is read from this process's RSS, which the
// package's parallel tests grow with their own compiles (a CI run saw
// 436 MiB while the bomb's compile worker was stopped at its limit).
func TestCompileBomb(t *testing.T) {
	const bound = 8 << 20
	cache := t.TempDir()
	r := confinedRunner(t, Config{Workers: 1, CacheDir: cache, CacheMaxBytes: bound})
	l := testLimits()
	l.Memory = 16 << 20
	l.Timeout = limits.Duration(time.Second)
	before := rss(t)
	start := time.Now()
	res, err := r.Run(context.Background(), Exec{ModuleBytes: compileBomb(), Argv: []string{"bomb"}, Limits: l})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	t.Logf("bomb: %s in %s, peak %d bytes: %s", res.Status, time.Since(start).Round(time.Millisecond), res.PeakMemory, res.Reason)
	if res.Status != run.StatusMemoryLimit && res.Status != run.StatusTimeout {
		t.Errorf("bomb: %s; want memory_limit or timeout", summary(res))
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("the bomb took %s, past its 1 s limit by far", took)
	}
	if grew := rss(t) - before; grew > 256<<20 {
		t.Errorf("the runner's process grew by %d MiB compiling the bomb", grew>>20)
	}
	if size := dirSize(t, cache); size > bound {
		t.Errorf("the cache holds %d bytes, over its bound of %d", size, bound)
	}
	ok := mustRun(t, r, Exec{Module: testdata("hello.wasm"), Argv: []string{"hello"}, Limits: testLimits()})
	if ok.Status != run.StatusOK || string(ok.Stdout) == "" {
		t.Errorf("a module after the bomb: %s", summary(ok))
	}
}

func dirSize(t *testing.T, dir string) int64 {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if info, err := d.Info(); err == nil && info.Mode().IsRegular() {
			n += info.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestProbeWorker: the probe doctor runs reports a worker as
// TestWorkerUnprivileged finds one, and leaves no worker or cgroup behind.
func TestProbeWorker(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Missing(t, "root (workers change uid and get cgroups)", "sudo go test")
	}
	st, err := ProbeWorker(context.Background(), 16<<20)
	if err != nil {
		t.Fatal(err)
	}
	uid := strconv.Itoa(DefaultWorkerUID)
	if st.Uid != strings.Repeat(uid+"\t", 3)+uid || st.CapEff != "0000000000000000" || st.CapPrm != "0000000000000000" ||
		st.NoNewPrivs != "1" || st.Seccomp != "2" || st.Threads == 0 || st.ThreadsFiltered != st.Threads || !st.InCgroup {
		t.Errorf("probe: %+v", st)
	}
	if st.MemoryLimit < 16<<20 || st.MemoryLimit > 1<<30 {
		t.Errorf("the worker's cgroup limit is %d, want its base plus 16 MiB plus %d", st.MemoryLimit, workerSlack)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", st.PID)); err == nil {
		t.Errorf("the probed worker %d still runs", st.PID)
	}
	if _, err := os.Stat(st.Cgroup); err == nil {
		t.Errorf("the probed worker's cgroup %s is still there", st.Cgroup)
	}
}
