package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"time"

	"github.com/sandboxd/sandboxd/bench/latency"
	"github.com/sandboxd/sandboxd/internal/isolate"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/runtimes"
	"github.com/sandboxd/sandboxd/internal/session"
)

// startPace is the pause between two sessions of a paced series, after
// the kernels started ahead were refilled.
const startPace = 100 * time.Millisecond

// startBench times n sessions from Create to the answer of their first
// cell, paced and back to back, with kernels started ahead and without,
// next to the same kernel started bare on the host and answering its
// first cell.
func startBench(ctx context.Context, r *isolate.Runner, n int) error {
	fmt.Printf("create -> first cell's answer (%q), %d sessions each; load %s\n\n", cell, n, latency.Load())
	bare, err := timeN(n, 0, bareStart)
	if err != nil {
		return fmt.Errorf("bare kernel: %w", err)
	}
	cold := session.NewManager(ctx, session.Config{Runner: r})
	defer cold.Close()
	ready := session.NewManager(ctx, session.Config{Runner: r, Ready: 2})
	defer ready.Close()
	// The first kernels started ahead, before the first take.
	time.Sleep(3 * time.Second)
	fmt.Printf("%-44s %9s %9s %9s %13s\n", "", "median", "p99", "× bare", "Create median")
	row := func(name string, d, create []time.Duration) {
		fmt.Printf("%-44s %7.2fms %7.2fms %9.2f", name, latency.Ms(latency.Pct(d, 50)), latency.Ms(latency.Pct(d, 99)), float64(latency.Pct(d, 50))/float64(latency.Pct(bare, 50)))
		if create != nil {
			fmt.Printf(" %11.2fms", latency.Ms(latency.Pct(create, 50)))
		}
		fmt.Println()
	}
	row("bare python3 kernel on the host (no sandbox)", bare, nil)
	for _, c := range []struct {
		name string
		m    *session.Manager
		pace time.Duration
	}{
		{"cold, paced", cold, startPace},
		{"2 kept ahead, paced", ready, startPace},
		{"cold, back to back", cold, 0},
		{"2 kept ahead, back to back", ready, 0},
	} {
		ahead, creates := 0, []time.Duration{}
		d, err := timeN(n, c.pace, func() (time.Duration, error) {
			// Paced: the kernels kept ahead are all there.
			for c.pace > 0 && c.m == ready && ready.Ready() < 2 {
				time.Sleep(10 * time.Millisecond)
			}
			d, create, a, err := firstAnswer(ctx, c.m)
			if a {
				ahead++
			}
			creates = append(creates, create)
			return d, err
		})
		if err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
		sort.Slice(creates, func(i, j int) bool { return creates[i] < creates[j] })
		row(fmt.Sprintf("%s, %d ahead", c.name, ahead), d, creates)
	}
	fmt.Printf("\nload after: %s; target: at most 15 ms at the median\n", latency.Load())
	return nil
}

// timeN calls f n times, pace apart, and returns the times it gives,
// sorted.
func timeN(n int, pace time.Duration, f func() (time.Duration, error)) ([]time.Duration, error) {
	out := make([]time.Duration, 0, n)
	for range n {
		time.Sleep(pace)
		d, err := f()
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

// firstAnswer times a session of m from Create to its first cell's
// answer, and Create alone, then deletes it (not timed).
func firstAnswer(ctx context.Context, m *session.Manager) (total, create time.Duration, ahead bool, err error) {
	t0 := time.Now()
	s, err := m.Create(ctx, "bench", &run.SessionSpec{})
	if err != nil {
		return 0, 0, false, err
	}
	create = time.Since(t0)
	res, err := s.Exec(ctx, run.CellRequest{Code: cell}, run.CellStream{})
	d := time.Since(t0)
	if err == nil && res.Result["text/plain"] != "2" {
		err = fmt.Errorf("cell answered %+v", res)
	}
	if derr := m.Delete("bench", s.ID()); err == nil {
		err = derr
	}
	return d, create, s.Ahead(), err
}

// bareKernelCmd is the session kernel started on the host, its requests on
// fd 3 and answers on fd 4 as in a sandbox. The caller closes ctlW and
// waits for the command.
func bareKernelCmd() (cmd *exec.Cmd, ctlW *os.File, answers *bufio.Reader, err error) {
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		return nil, nil, nil, err
	}
	ansR, ansW, err := os.Pipe()
	if err != nil {
		return nil, nil, nil, err
	}
	python, err := runtimes.Default().Lookup("python")
	if err != nil {
		return nil, nil, nil, err
	}
	cmd = exec.Command(python.Binary, "-c", string(python.Kernel.Source))
	cmd.ExtraFiles = []*os.File{ctlR, ansW}
	cmd.Dir = os.TempDir()
	err = cmd.Start()
	ctlR.Close()
	ansW.Close()
	if err != nil {
		ctlW.Close()
		return nil, nil, nil, err
	}
	return cmd, ctlW, bufio.NewReader(ansR), nil
}

// bareStart times the kernel started on the host until it answers its
// first cell.
func bareStart() (time.Duration, error) {
	t0 := time.Now()
	cmd, ctlW, answers, err := bareKernelCmd()
	if err != nil {
		return 0, err
	}
	defer func() { ctlW.Close(); _ = cmd.Wait() }()
	if _, err := fmt.Fprintf(ctlW, "{\"id\": \"1\", \"code\": %q}\n", cell); err != nil {
		return 0, err
	}
	for {
		line, err := answers.ReadBytes('\n')
		if err != nil {
			return 0, err
		}
		if bytes.Contains(line, []byte(`"done"`)) {
			return time.Since(t0), nil
		}
	}
}
