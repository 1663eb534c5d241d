// Command spawn measures what a process pays to start a child, by the
// size of its own heap and by how it clones: Go's os/exec with no new
// user namespace (clone with CLONE_VFORK|CLONE_VM: the child borrows the
// parent's memory until it execs), and with CLONE_NEWUSER, which Go can
// only do by a full fork (the kernel refuses CLONE_NEWUSER with
// CLONE_VM), copying the parent's page tables and leaving it to take a
// copy-on-write fault on each page it writes after. The daemon clones
// every sandbox the second way (issue 17: perf put a quarter of a run's
// CPU in the daemon's kernel side); this says how much of that is the
// fork itself and how it grows with the daemon's heap, against the first
// way measured in the same run. Each child is /bin/true. Rounds
// alternate the two ways, so load moves both alike. Needs user
// namespaces (root, or unprivileged ones allowed):
//
//	go run ./bench/spawn                   # 300 spawns each, heaps of 16 and 128 MiB
//	go run ./bench/spawn -n 100 -heaps 16,512
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sandboxd/sandboxd/bench/latency"
)

func main() {
	n := flag.Int("n", 300, "spawns of each kind at each heap size")
	heaps := flag.String("heaps", "16,128", "heap sizes in MiB, comma-separated")
	dirty := flag.Int("dirty", 0, "MiB of its heap the parent writes after each spawn, as a busy daemon writes its own: after a fork each such page costs a fault")
	flag.Parse()
	var sizes []int
	for _, f := range strings.Split(*heaps, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v < 0 {
			fmt.Fprintf(os.Stderr, "spawn: -heaps %q: want sizes in MiB such as 16,128\n", *heaps)
			os.Exit(2)
		}
		sizes = append(sizes, v)
	}
	fmt.Printf("%d spawns of /bin/true each, %d MiB written after each; load average %s\n\n", *n, *dirty, latency.Load())
	fmt.Printf("%-8s %-22s %10s %10s %14s %8s\n", "heap", "clone", "wall p50", "wall p99", "parent CPU", "x vfork")
	for _, mib := range sizes {
		heap := touch(mib << 20)
		kinds := []kind{{"vfork (no userns)", nil}, {"fork, CLONE_NEWUSER", userns()}}
		res := make([]result, len(kinds))
		for range *n {
			for i, k := range kinds {
				if err := res[i].spawn(k.attr, heap, *dirty<<20); err != nil {
					fmt.Fprintf(os.Stderr, "spawn (%s): %v\n", k.name, err)
					os.Exit(1)
				}
			}
		}
		base := res[0].cpuPer()
		for i, k := range kinds {
			r := &res[i]
			fmt.Printf("%-8s %-22s %10s %10s %14s %7.2fx\n", fmt.Sprintf("%d MiB", mib), k.name,
				r.pct(50), r.pct(99), r.cpuPer().Round(time.Microsecond), float64(r.cpuPer())/float64(base))
		}
		keep(heap)
	}
}

type kind struct {
	name string
	attr *syscall.SysProcAttr
}

// userns maps this process's ids to root in a new user namespace, as the
// daemon does (with more ids).
func userns() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
	}
}

// result is one kind's spawns: their wall times and the parent's CPU
// (user and system, this process's threads) across them.
type result struct {
	walls []time.Duration
	cpu   time.Duration
}

// spawn runs one child, then writes dirty bytes of heap (a byte a page),
// counting that in the parent's CPU: the faults it takes after a fork.
func (r *result) spawn(attr *syscall.SysProcAttr, heap [][]byte, dirty int) error {
	cmd := exec.Command("/bin/true")
	cmd.SysProcAttr = attr
	c0 := selfCPU()
	t0 := time.Now()
	err := cmd.Run()
	r.walls = append(r.walls, time.Since(t0))
	for _, b := range heap {
		if dirty <= 0 {
			break
		}
		for i := 0; i < len(b) && dirty > 0; i += 4096 {
			b[i]++
			dirty -= 4096
		}
	}
	r.cpu += selfCPU() - c0
	return err
}

func (r *result) cpuPer() time.Duration { return r.cpu / time.Duration(max(len(r.walls), 1)) }

func (r *result) pct(p int) time.Duration {
	s := slices.Clone(r.walls)
	slices.Sort(s)
	return latency.Pct(s, p).Round(time.Microsecond)
}

// selfCPU is this process's CPU time so far, its children's excluded.
func selfCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// touch allocates n bytes in pages the process has written, as a
// daemon's live heap is.
func touch(n int) [][]byte {
	var heap [][]byte
	for n > 0 {
		b := make([]byte, min(n, 1<<20))
		for i := range b {
			if i%4096 == 0 {
				b[i] = 1
			}
		}
		heap = append(heap, b)
		n -= len(b)
	}
	return heap
}

var sink int

// keep holds heap live until here.
func keep(heap [][]byte) { sink += len(heap) }
