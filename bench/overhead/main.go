// Command overhead measures what the process backend adds to a program's
// run time: `/usr/bin/python3 -c pass` bare, then the same through the
// sandbox (workspace, cgroup, namespaces, new root, seccomp, cleanup),
// interleaved in one run so both see the same machine noise. It prints
// median, p90 and p99 of each and the overhead, then where the sandbox's
// time goes, from the runner's phase log.
//
//	go run ./bench/overhead -n 50
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"sort"
	"strings"
	"time"

	"github.com/sandboxd/sandboxd/bench/latency"
	"github.com/sandboxd/sandboxd/internal/isolate"
	"github.com/sandboxd/sandboxd/internal/isolate/nsinit"
	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
)

func main() {
	nsinit.MaybeRun()
	n := flag.Int("n", 50, "runs of each")
	flag.Parse()
	if err := measure(*n); err != nil {
		fmt.Fprintln(os.Stderr, "overhead:", err)
		os.Exit(1)
	}
}

// phaseLog collects the runner's "run phases" debug lines.
type phaseLog struct{ lines []string }

func (p *phaseLog) Write(b []byte) (int, error) {
	p.lines = append(p.lines, string(b))
	return len(b), nil
}

func measure(n int) error {
	var plog phaseLog
	log := slog.New(slog.NewTextHandler(&plog, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r, err := isolate.New(isolate.Config{Logger: log})
	if err != nil {
		return err
	}
	argv := []string{"/usr/bin/python3", "-c", "pass"}
	l := limits.Defaults()
	sandboxed := func() (time.Duration, error) {
		start := time.Now()
		ws, err := r.NewWorkspace(l.Tmpfs)
		if err != nil {
			return 0, err
		}
		res, err := r.Run(context.Background(), ws, isolate.Exec{Argv: argv, Env: []string{"PATH=/usr/bin:/bin"}, Limits: l})
		cerr := ws.Close()
		d := time.Since(start)
		if err != nil {
			return 0, err
		}
		if res.Status != run.StatusOK {
			return 0, fmt.Errorf("sandboxed run: %s %s", res.Status, res.Stderr)
		}
		return d, cerr
	}
	bare := func() (time.Duration, error) {
		start := time.Now()
		err := exec.Command(argv[0], argv[1:]...).Run()
		return time.Since(start), err
	}
	// Warm up both: page cache, cgroup hierarchy, Go runtime.
	for i := 0; i < 3; i++ {
		if _, err := bare(); err != nil {
			return err
		}
		if _, err := sandboxed(); err != nil {
			return err
		}
	}
	plog.lines = nil
	var tb, ts []time.Duration
	for i := 0; i < n; i++ {
		d, err := bare()
		if err != nil {
			return err
		}
		tb = append(tb, d)
		d, err = sandboxed()
		if err != nil {
			return err
		}
		ts = append(ts, d)
	}
	fmt.Printf("%d runs each of %s, interleaved, cgroup %s\n\n", n, strings.Join(argv, " "), r.CgroupVersion())
	fmt.Printf("%-10s %10s %10s %10s\n", "", "median", "p90", "p99")
	row := func(name string, ds []time.Duration) {
		fmt.Printf("%-10s %10s %10s %10s\n", name, pct(ds, 50), pct(ds, 90), pct(ds, 99))
	}
	row("bare", tb)
	row("sandbox", ts)
	over := pct(ts, 50) - pct(tb, 50)
	fmt.Printf("\noverhead at the median: %s (%.2fx bare); target: at most 25ms\n", over, float64(pct(ts, 50))/float64(pct(tb, 50)))
	fmt.Println("\nwhere the sandbox's time goes (median of each phase):")
	printPhases(plog.lines)
	return nil
}

func printPhases(lines []string) {
	byName := map[string][]time.Duration{}
	var order []string
	for _, line := range lines {
		latency.AddPhases(line, byName, &order)
	}
	for _, name := range order {
		fmt.Printf("  %-20s %10s\n", name, pct(byName[name], 50))
	}
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
