// Command jupyter measures the Jupyter kernel gateway beside the session
// HTTP API it is built on, both served in-process on a loopback port as
// `sandboxd serve` mounts them: the start of a kernel (POST /api/kernels:
// a session and the kernel's prelude) against POST /v1/sessions, and a
// trivial cell's round trip over the channels WebSocket (execute_request
// until both execute_reply and status idle, as a notebook completes a
// cell; JSON messages) against POST /v1/sessions/{id}/exec. Each pair is
// measured alternately, so the machine's load falls on both alike. Must run
// as root:
//
//	go run ./bench/jupyter -n 500 -starts 20
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/sandboxd/sandboxd/bench/latency"
	"github.com/sandboxd/sandboxd/internal/api"
	"github.com/sandboxd/sandboxd/internal/isolate"
	"github.com/sandboxd/sandboxd/internal/isolate/nsinit"
	"github.com/sandboxd/sandboxd/internal/jupyter"
	"github.com/sandboxd/sandboxd/internal/session"
)

func main() {
	nsinit.MaybeRun()
	n := flag.Int("n", 500, "cells of each")
	starts := flag.Int("starts", 20, "kernel and session starts of each")
	flag.Parse()
	if err := bench(*n, *starts); err != nil {
		fmt.Fprintln(os.Stderr, "jupyter:", err)
		os.Exit(1)
	}
}

const cell = "1+1"

func bench(n, starts int) error {
	ctx := context.Background()
	state, err := os.MkdirTemp("/run", "sandboxd-bench-jupyter-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(state)
	r, err := isolate.New(isolate.Config{StateDir: state})
	if err != nil {
		return err
	}
	m := session.NewManager(ctx, session.Config{Runner: r, Prime: true})
	defer m.Close()
	g := jupyter.New(ctx, jupyter.Config{Sessions: m, Owner: api.Owner})
	defer g.Close()
	srv := api.New(nil, api.Config{Sessions: m})
	for _, rt := range g.Routes() {
		srv.Handle(rt.Pattern, rt.Handler)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: srv}
	go func() { _ = hs.Serve(ln) }()
	defer hs.Close()
	base := "http://" + ln.Addr().String()

	// Each pair is measured alternately, so a change in the machine's
	// load falls on both sides alike.
	sessStart, kernStart, err := startPairs(starts, base)
	if err != nil {
		return err
	}
	httpCells, wsCells, err := cellPairs(ctx, n, base)
	if err != nil {
		return err
	}

	fmt.Printf("Jupyter kernel gateway vs the session HTTP API, in-process on loopback\n\n")
	fmt.Printf("%-44s %9s %9s %12s\n", "", "median", "p99", "× session API")
	row := func(name string, d, baseline []time.Duration) {
		fmt.Printf("%-44s %7.2fms %7.2fms %12.2f\n", name, latency.Ms(latency.Pct(d, 50)), latency.Ms(latency.Pct(d, 99)), float64(latency.Pct(d, 50))/float64(latency.Pct(baseline, 50)))
	}
	row(fmt.Sprintf("start: POST /v1/sessions (%d)", starts), sessStart, sessStart)
	row(fmt.Sprintf("start: POST /api/kernels (%d)", starts), kernStart, sessStart)
	row(fmt.Sprintf("cell %q: POST .../exec (%d)", cell, n), httpCells, httpCells)
	row(fmt.Sprintf("cell %q: WebSocket execute_request (%d)", cell, n), wsCells, httpCells)
	return nil
}

// startPairs times the start of a session (POST /v1/sessions) and of a
// kernel (POST /api/kernels), alternately, n of each after one unmeasured
// pair. Each is deleted after it is timed.
func startPairs(n int, base string) (sessions, kernels []time.Duration, err error) {
	start := func(path, body, del string) (time.Duration, error) {
		var created struct{ ID string }
		t := time.Now()
		if err := call("POST", base+path, body, &created); err != nil {
			return 0, err
		}
		took := time.Since(t)
		return took, call("DELETE", base+del+created.ID, "", nil)
	}
	for i := range n + 1 {
		s, err := start("/v1/sessions", `{}`, "/v1/sessions/")
		if err != nil {
			return nil, nil, fmt.Errorf("session start: %w", err)
		}
		k, err := start("/api/kernels", `{"name":"python3"}`, "/api/kernels/")
		if err != nil {
			return nil, nil, fmt.Errorf("kernel start: %w", err)
		}
		if i > 0 {
			sessions, kernels = append(sessions, s), append(kernels, k)
		}
	}
	slices.Sort(sessions)
	slices.Sort(kernels)
	return sessions, kernels, nil
}

// call sends a request and decodes a 2xx answer into out (if not nil).
func call(method, url, body string, out any) error {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, b)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

// cellPairs times n cells of a session over the HTTP API and n of a
// kernel over its WebSocket, alternately, after 10 unmeasured pairs.
func cellPairs(ctx context.Context, n int, base string) (httpCells, wsCells []time.Duration, err error) {
	var info, k struct{ ID string }
	if err := call("POST", base+"/v1/sessions", `{}`, &info); err != nil {
		return nil, nil, err
	}
	defer call("DELETE", base+"/v1/sessions/"+info.ID, "", nil)
	if err := call("POST", base+"/api/kernels", `{}`, &k); err != nil {
		return nil, nil, err
	}
	defer call("DELETE", base+"/api/kernels/"+k.ID, "", nil)
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/api/kernels/"+k.ID+"/channels", nil)
	if err != nil {
		return nil, nil, err
	}
	defer ws.CloseNow()
	body := fmt.Sprintf(`{"code": %q}`, cell)
	httpCell := func() error {
		var res struct {
			Result map[string]string
		}
		if err := call("POST", base+"/v1/sessions/"+info.ID+"/exec", body, &res); err != nil {
			return err
		}
		if res.Result["text/plain"] != "2" {
			return fmt.Errorf("cell answered %+v", res)
		}
		return nil
	}
	for i := range n + 10 {
		t := time.Now()
		if err := httpCell(); err != nil {
			return nil, nil, fmt.Errorf("session cell: %w", err)
		}
		h := time.Since(t)
		t = time.Now()
		if err := roundTrip(ctx, ws); err != nil {
			return nil, nil, fmt.Errorf("kernel cell: %w", err)
		}
		if i >= 10 {
			httpCells, wsCells = append(httpCells, h), append(wsCells, time.Since(t))
		}
	}
	slices.Sort(httpCells)
	slices.Sort(wsCells)
	return httpCells, wsCells, nil
}

// roundTrip sends one execute_request and reads until its execute_reply
// and its idle status are both in.
func roundTrip(ctx context.Context, ws *websocket.Conn) error {
	id := randomID()
	msg, _ := json.Marshal(map[string]any{
		"channel":       "shell",
		"header":        map[string]string{"msg_id": id, "msg_type": "execute_request", "session": "bench", "username": "bench", "version": "5.3", "date": ""},
		"parent_header": map[string]any{}, "metadata": map[string]any{},
		"content": map[string]any{"code": cell, "silent": false, "store_history": true, "allow_stdin": false, "stop_on_error": true},
	})
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := ws.Write(ctx, websocket.MessageText, msg); err != nil {
		return err
	}
	replied, idle, result := false, false, false
	for !replied || !idle {
		_, b, err := ws.Read(ctx)
		if err != nil {
			return err
		}
		var m struct {
			Header struct {
				MsgType string `json:"msg_type"`
			}
			ParentHeader struct {
				MsgID string `json:"msg_id"`
			} `json:"parent_header"`
			Content json.RawMessage
		}
		if err := json.Unmarshal(b, &m); err != nil {
			return err
		}
		if m.ParentHeader.MsgID != id {
			continue
		}
		switch m.Header.MsgType {
		case "execute_reply":
			replied = true
		case "execute_result":
			result = bytes.Contains(m.Content, []byte(`"text/plain":"2"`))
		case "status":
			idle = bytes.Contains(m.Content, []byte(`"idle"`))
		}
	}
	if !result {
		return fmt.Errorf("no execute_result 2")
	}
	return nil
}

func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
