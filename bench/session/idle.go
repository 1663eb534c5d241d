package main

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sandboxd/sandboxd/bench/latency"
	"github.com/sandboxd/sandboxd/internal/isolate"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/session"
)

// idleSample is how many of the idle sessions run a cell at the end.
const idleSample = 20

// idleBench opens n idle sessions (no kernel started ahead) and reports
// what each costs the host: MemAvailable's fall over n, and per session
// its cgroup's memory usage (the kernel's pages and its tmpfs) and the
// PSS and USS of its processes; next to the same kernel started bare on
// the host. Then a cell runs in a sample of them.
func idleBench(ctx context.Context, r *isolate.Runner, n int) error {
	fmt.Printf("%d idle Python sessions; load %s\n\n", n, latency.Load())
	cmd, ctlW, answers, err := bareKernelCmd()
	if err != nil {
		return err
	}
	if _, err := answers.ReadBytes('\n'); err != nil {
		return err
	}
	bare := smaps(cmd.Process.Pid)
	ctlW.Close()
	_ = cmd.Wait()

	m := session.NewManager(ctx, session.Config{Runner: r, MaxSessions: n, MaxPerOwner: n, IdleTimeout: time.Hour})
	defer m.Close()
	before, kBefore, rssBefore := memAvailable(), kernelMemory(), selfRSS()
	fdsBefore, mountsBefore, threadsBefore := countFDs(), countMounts(), countThreads()
	sessions := make([]*session.Session, 0, n)
	creates := make([]time.Duration, 0, n)
	for i := range n {
		t0 := time.Now()
		s, err := m.Create(ctx, "bench", &run.SessionSpec{})
		if err != nil {
			return fmt.Errorf("session %d: %w", i+1, err)
		}
		creates = append(creates, time.Since(t0))
		sessions = append(sessions, s)
	}
	time.Sleep(2 * time.Second)
	after, kAfter, rssAfter := memAvailable(), kernelMemory(), selfRSS()
	fds, mounts, threads := countFDs()-fdsBefore, countMounts()-mountsBefore, countThreads()-threadsBefore
	cgroups := sessionCgroups()
	var usage, pss, uss, counted int64
	for _, s := range sessions {
		dirs := cgroups[s.RunID()]
		u, ok := cgroupUsage(dirs)
		if !ok {
			continue
		}
		counted++
		usage += u
		for _, pid := range cgroupPids(dirs) {
			p := smaps(pid)
			pss += p.pss
			uss += p.uss
		}
	}
	mib := func(b int64) float64 { return float64(b) / (1 << 20) }
	fmt.Printf("%-48s %9s %9s\n", "per kernel", "PSS", "USS")
	fmt.Printf("%-48s %7.2fMiB %7.2fMiB\n", "bare python3 kernel on the host, alone", mib(bare.pss), mib(bare.uss))
	if counted > 0 {
		fmt.Printf("%-48s %7.2fMiB %7.2fMiB\n", "idle session (its sandbox's processes)", mib(pss/counted), mib(uss/counted))
		fmt.Printf("\nidle session's cgroup memory usage (kernel + tmpfs): %.2f MiB (mean of %d)\n", mib(usage/counted), counted)
	}
	fmt.Printf("host MemAvailable fell by %.2f MiB per session (%d sessions)\n", mib((before-after)/int64(n)), n)
	// Where the rest of that fall goes: the kernel's own objects (slab:
	// mounts, inodes, namespaces; page tables; kernel stacks), most of it
	// outside the sessions' cgroups, and this process (the session
	// manager: captures, buffers, goroutines).
	fmt.Printf("  of which kernel slab, page tables and stacks %.2f MiB, this process's RSS %.2f MiB\n",
		mib((kAfter-kBefore)/int64(n)), mib((rssAfter-rssBefore)/int64(n)))
	// What else bounds how many sessions one daemon holds: its file
	// descriptors (RLIMIT_NOFILE) and its mount table, which every new
	// sandbox's mount namespace copies.
	var nofile unix.Rlimit
	_ = unix.Getrlimit(unix.RLIMIT_NOFILE, &nofile)
	fmt.Printf("per session in this process: %.1f file descriptors (RLIMIT_NOFILE %d), %.1f mounts, %.2f threads\n",
		float64(fds)/float64(n), nofile.Cur, float64(mounts)/float64(n), float64(threads)/float64(n))
	// What a session's creation costs as more are open (each new sandbox
	// copies the mount table the others grew).
	tenth := max(1, n/10)
	first, last := slices.Clone(creates[:tenth]), slices.Clone(creates[n-tenth:])
	slices.Sort(first)
	slices.Sort(last)
	fmt.Printf("create (no kernel ahead), p50 of the first %d: %.1f ms, of the last %d: %.1f ms\n",
		tenth, latency.Ms(latency.Pct(first, 50)), tenth, latency.Ms(latency.Pct(last, 50)))

	step := max(1, n/idleSample)
	var cells []time.Duration
	for i := 0; i < n; i += step {
		t0 := time.Now()
		res, err := sessions[i].Exec(ctx, run.CellRequest{Code: cell}, run.CellStream{})
		if err != nil || res.Result["text/plain"] != "2" {
			return fmt.Errorf("a cell in session %d: %v %+v", i+1, err, res)
		}
		cells = append(cells, time.Since(t0))
	}
	var sum time.Duration
	for _, c := range cells {
		sum += c
	}
	fmt.Printf("a cell in %d of them: all answered, mean %.2f ms\n", len(cells), latency.Ms(sum/time.Duration(len(cells))))
	fmt.Printf("load after: %s; target: at most 5 MiB of host memory per idle session\n", latency.Load())
	return nil
}

// countFDs is the number of this process's open file descriptors.
func countFDs() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	return len(ents)
}

// countThreads is the number of this process's threads.
func countThreads() int {
	ents, _ := os.ReadDir("/proc/self/task")
	return len(ents)
}

// countMounts is the number of mounts in this process's mount namespace.
func countMounts() int {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	return strings.Count(string(b), "\n")
}

// memAvailable is /proc/meminfo's MemAvailable in bytes.
func memAvailable() int64 { return procKB("/proc/meminfo", "MemAvailable:") }

// kernelMemory is what the kernel holds for itself: slab, page tables and
// kernel stacks, in bytes.
func kernelMemory() int64 {
	return procKB("/proc/meminfo", "Slab:") + procKB("/proc/meminfo", "PageTables:") + procKB("/proc/meminfo", "KernelStack:")
}

// selfRSS is this process's resident set in bytes.
func selfRSS() int64 { return procKB("/proc/self/status", "VmRSS:") }

// procKB is the field key (in kB) of a /proc file, in bytes.
func procKB(file, key string) int64 {
	b, _ := os.ReadFile(file)
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == key {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

type mem struct{ pss, uss int64 }

// smaps is pid's PSS and USS (private clean and dirty), in bytes.
func smaps(pid int) mem {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	var m mem
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "Pss:":
			m.pss += kb << 10
		case "Private_Clean:", "Private_Dirty:":
			m.uss += kb << 10
		}
	}
	return m
}

// sessionCgroups maps each run id to its cgroup directories (one per v1
// hierarchy, or one on v2): those named "<run id>-<n>".
func sessionCgroups() map[string][]string {
	out := map[string][]string{}
	_ = filepath.WalkDir("/sys/fs/cgroup", func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		if i := strings.LastIndexByte(d.Name(), '-'); i > 0 {
			if _, err := os.Stat(filepath.Join(p, "cgroup.procs")); err == nil {
				out[d.Name()[:i]] = append(out[d.Name()[:i]], p)
			}
		}
		return nil
	})
	return out
}

// cgroupUsage is the memory usage of the cgroup among dirs that has one.
func cgroupUsage(dirs []string) (int64, bool) {
	for _, d := range dirs {
		for _, f := range []string{"memory.usage_in_bytes", "memory.current"} {
			if b, err := os.ReadFile(filepath.Join(d, f)); err == nil {
				v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
				return v, err == nil
			}
		}
	}
	return 0, false
}

// cgroupPids are the processes of the first of dirs.
func cgroupPids(dirs []string) []int {
	if len(dirs) == 0 {
		return nil
	}
	b, _ := os.ReadFile(filepath.Join(dirs[0], "cgroup.procs"))
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if p, err := strconv.Atoi(f); err == nil {
			pids = append(pids, p)
		}
	}
	return pids
}
