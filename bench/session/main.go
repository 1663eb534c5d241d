// Command session measures the latency of a trivial cell (`1+1`) in a
// warm session, median and p99, side by side with a baseline measured in
// the same run: the same kernel started bare on the host, answering over
// the same pipes, with no sandbox and no session manager. The difference
// is what the session layer costs per cell (the request and answer
// framing, the output cut, the cgroup CPU reads). With -server it also
// measures a session of a running daemon over HTTP. Must run as root:
//
//	go run ./bench/session -n 500
//	go run ./bench/session -n 500 -server http://127.0.0.1:8080
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/sandboxd/sandboxd/bench/latency"
	"github.com/sandboxd/sandboxd/internal/isolate"
	"github.com/sandboxd/sandboxd/internal/isolate/nsinit"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/session"
)

func main() {
	nsinit.MaybeRun()
	n := flag.Int("n", 500, "cells of each")
	server := flag.String("server", "", "also measure a session of the daemon at this URL")
	start := flag.Int("start", 0, "time N sessions from creation to their first answer instead")
	idle := flag.Int("idle", 0, "open N idle sessions and report their memory instead")
	flag.BoolVar(&spawner, "spawner", true, "clone the sandboxes from a spawner, as the daemon does (isolate.Config.Spawner)")
	flag.Parse()
	var err error
	switch {
	case *start > 0:
		err = withRunner(func(r *isolate.Runner) error { return startBench(context.Background(), r, *start) })
	case *idle > 0:
		err = withRunner(func(r *isolate.Runner) error { return idleBench(context.Background(), r, *idle) })
	default:
		err = withRunner(func(r *isolate.Runner) error { return bench(r, *n, *server) })
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "session:", err)
		os.Exit(1)
	}
}

const cell = "1+1"

// spawner is -spawner.
var spawner bool

// withRunner calls f with a process backend in a state dir of its own.
func withRunner(f func(*isolate.Runner) error) error {
	state, err := os.MkdirTemp("/run", "sandboxd-bench-session-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(state)
	r, err := isolate.New(isolate.Config{StateDir: state, Spawner: spawner})
	if err != nil {
		return err
	}
	return f(r)
}

func bench(r *isolate.Runner, n int, server string) error {
	ctx := context.Background()
	bare, err := bareKernel(n)
	if err != nil {
		return fmt.Errorf("bare kernel: %w", err)
	}
	m := session.NewManager(ctx, session.Config{Runner: r})
	defer m.Close()
	t0 := time.Now()
	s, err := m.Create(ctx, "bench", &run.SessionSpec{})
	if err != nil {
		return err
	}
	created := time.Since(t0)
	sandboxed, err := latency.Measure(n, 10, func() error {
		res, err := s.Exec(ctx, run.CellRequest{Code: cell}, run.CellStream{})
		if err == nil && res.Result["text/plain"] != "2" {
			err = fmt.Errorf("cell answered %+v", res)
		}
		return err
	})
	if err != nil {
		return err
	}
	fmt.Printf("trivial cell %q, %d cells each (session created in %.1f ms)\n\n", cell, n, latency.Ms(created))
	fmt.Printf("%-34s %9s %9s %9s\n", "", "median", "p99", "× bare")
	row := func(name string, d []time.Duration) {
		fmt.Printf("%-34s %7.2fms %7.2fms %9.2f\n", name, latency.Ms(latency.Pct(d, 50)), latency.Ms(latency.Pct(d, 99)), float64(latency.Pct(d, 50))/float64(latency.Pct(bare, 50)))
	}
	row("bare kernel (no sandbox)", bare)
	row("session, in-process manager", sandboxed)
	if server != "" {
		api, err := apiCells(n, server)
		if err != nil {
			return fmt.Errorf("daemon: %w", err)
		}
		row("session, daemon over HTTP", api)
	}
	fmt.Printf("\ntarget: under 5 ms at the median for a warm session\n")
	return nil
}

// bareKernel runs the kernel on the host with the protocol's pipes and
// times n round trips.
func bareKernel(n int) ([]time.Duration, error) {
	cmd, ctlW, answers, err := bareKernelCmd()
	if err != nil {
		return nil, err
	}
	defer func() { ctlW.Close(); _ = cmd.Wait() }()
	if _, err := answers.ReadBytes('\n'); err != nil { // ready
		return nil, err
	}
	i := 0
	return latency.Measure(n, 10, func() error {
		i++
		req, _ := json.Marshal(map[string]string{"id": fmt.Sprint(i), "code": cell})
		if _, err := ctlW.Write(append(req, '\n')); err != nil {
			return err
		}
		line, err := answers.ReadBytes('\n')
		if err == nil && !bytes.Contains(line, []byte(`"done"`)) {
			err = fmt.Errorf("answer %s", line)
		}
		return err
	})
}

// apiCells times n cells of a session of the daemon at base.
func apiCells(n int, base string) ([]time.Duration, error) {
	base = strings.TrimSuffix(base, "/")
	post := func(path, body string, out any) error {
		resp, err := http.Post(base+path, "application/json", strings.NewReader(body))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("%s: %s", path, resp.Status)
		}
		if out == nil {
			return nil
		}
		return json.NewDecoder(resp.Body).Decode(out)
	}
	var info run.SessionInfo
	if err := post("/v1/sessions", `{}`, &info); err != nil {
		return nil, err
	}
	defer func() {
		req, _ := http.NewRequest(http.MethodDelete, base+"/v1/sessions/"+info.ID, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	body := fmt.Sprintf(`{"code": %q}`, cell)
	return latency.Measure(n, 10, func() error {
		var res run.CellResult
		if err := post("/v1/sessions/"+info.ID+"/exec", body, &res); err != nil {
			return err
		}
		if res.Result["text/plain"] != "2" {
			return fmt.Errorf("cell answered %+v", res)
		}
		return nil
	})
}
