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
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/sandboxd/sandboxd/bench/latency"
	"github.com/sandboxd/sandboxd/internal/isolate"
	"github.com/sandboxd/sandboxd/internal/isolate/nsinit"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/runtimes"
	"github.com/sandboxd/sandboxd/internal/session"
)

func main() {
	nsinit.MaybeRun()
	n := flag.Int("n", 500, "cells of each")
	server := flag.String("server", "", "also measure a session of the daemon at this URL")
	flag.Parse()
	if err := bench(*n, *server); err != nil {
		fmt.Fprintln(os.Stderr, "session:", err)
		os.Exit(1)
	}
}

const cell = "1+1"

func bench(n int, server string) error {
	ctx := context.Background()
	bare, err := bareKernel(n)
	if err != nil {
		return fmt.Errorf("bare kernel: %w", err)
	}
	state, err := os.MkdirTemp("/run", "sandboxd-bench-session-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(state)
	r, err := isolate.New(isolate.Config{StateDir: state})
	if err != nil {
		return err
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
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	ansR, ansW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	python, err := runtimes.Default().Lookup("python")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(python.Binary, "-c", string(python.Kernel.Source))
	cmd.ExtraFiles = []*os.File{ctlR, ansW}
	cmd.Dir = os.TempDir()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ctlR.Close()
	ansW.Close()
	defer func() { ctlW.Close(); _ = cmd.Wait() }()
	answers := bufio.NewReader(ansR)
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
