// Command e2b measures an E2B sandbox's life through E2B's own SDK
// against a running daemon: Sandbox.create, a first runCode('1+1'),
// kill, one after another, p50 and p99; beside it, measured in the same
// run, alternating with it, the same through sandboxd's session API
// (POST /v1/sessions, an exec of 1+1, DELETE). The difference is what
// the E2B layer and the SDK cost. E2B reports about 150 ms for a cloud
// sandbox's start alone.
// Needs node and `npm ci --prefix tests/e2b`:
//
//	go run ./bench/e2b -server http://127.0.0.1:8080 -token "$(cat token)" -n 50
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"time"
)

func main() {
	server := flag.String("server", "http://127.0.0.1:8080", "the daemon's URL")
	token := flag.String("token", os.Getenv("SANDBOXD_TOKEN"), "a token of the daemon (the E2B API key)")
	n := flag.Int("n", 50, "sandboxes of each")
	sdk := flag.String("sdk", "tests/e2b", "the directory holding the E2B SDK's node_modules")
	flag.Parse()
	if err := bench(*server, *token, *sdk, *n); err != nil {
		fmt.Fprintln(os.Stderr, "e2b:", err)
		os.Exit(1)
	}
}

func bench(server, token, sdk string, n int) error {
	sdkDir, err := filepath.Abs(sdk)
	if err != nil {
		return err
	}
	node, err := startSDK(server, token, sdkDir)
	if err != nil {
		return err
	}
	defer node.close()
	// One of each first, untimed (the first session builds the kernel's
	// prime; node loads the SDK), then the two alternate, so a load that
	// comes and goes falls on both alike.
	var native, viaSDK []float64
	for i := range n + 1 {
		a, err := sessionLife(server, token)
		if err != nil {
			return fmt.Errorf("session API: %w", err)
		}
		b, err := node.life()
		if err != nil {
			return fmt.Errorf("E2B SDK: %w", err)
		}
		if i > 0 {
			native, viaSDK = append(native, a), append(viaSDK, b)
		}
	}
	fmt.Printf("create + first 1+1 + kill, %d sandboxes each, one at a time, alternating\n\n", n)
	fmt.Printf("%-34s %9s %9s\n", "", "p50 ms", "p99 ms")
	fmt.Printf("%-34s %9.1f %9.1f\n", "sandboxd session API (baseline)", pct(native, 50), pct(native, 99))
	fmt.Printf("%-34s %9.1f %9.1f\n", "E2B SDK against /e2b", pct(viaSDK, 50), pct(viaSDK, 99))
	fmt.Printf("\nE2B SDK / session API: p50 %.2fx, p99 %.2fx\n", pct(viaSDK, 50)/pct(native, 50), pct(viaSDK, 99)/pct(native, 99))
	return nil
}

// sessionLife times one session's life through /v1, in ms.
func sessionLife(server, token string) (float64, error) {
	t0 := time.Now()
	var info struct{ ID string }
	if err := call(server, token, "POST", "/v1/sessions", `{"runtime":"python"}`, http.StatusCreated, &info); err != nil {
		return 0, err
	}
	var res struct {
		Result map[string]string `json:"result"`
	}
	if err := call(server, token, "POST", "/v1/sessions/"+info.ID+"/exec", `{"code":"1+1"}`, http.StatusOK, &res); err != nil {
		return 0, err
	}
	if res.Result["text/plain"] != "2" {
		return 0, fmt.Errorf("1+1 answered %v", res.Result)
	}
	if err := call(server, token, "DELETE", "/v1/sessions/"+info.ID, "", http.StatusNoContent, nil); err != nil {
		return 0, err
	}
	return float64(time.Since(t0).Microseconds()) / 1000, nil
}

func call(server, token, method, path, body string, want int, v any) error {
	req, err := http.NewRequest(method, server+path, bytes.NewBufferString(body))
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	if v != nil {
		return json.Unmarshal(b, v)
	}
	return nil
}

// sdkProcess is sdk.mjs running: a line in, a sandbox life's ms out.
type sdkProcess struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

func startSDK(server, token, sdkDir string) (*sdkProcess, error) {
	script, err := filepath.Abs(filepath.Join("bench", "e2b", "sdk.mjs"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("node", script)
	cmd.Env = append(os.Environ(), "E2B_SDK_DIR="+sdkDir, "E2B_API_URL="+server+"/e2b", "E2B_SANDBOX_URL="+server+"/e2b", "E2B_API_KEY="+token)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("node %s: %w", script, err)
	}
	return &sdkProcess{cmd: cmd, in: in, out: bufio.NewScanner(out)}, nil
}

func (p *sdkProcess) life() (float64, error) {
	if _, err := io.WriteString(p.in, "\n"); err != nil {
		return 0, fmt.Errorf("sdk.mjs: %w", err)
	}
	if !p.out.Scan() {
		return 0, fmt.Errorf("sdk.mjs ended: %v", p.out.Err())
	}
	return strconv.ParseFloat(p.out.Text(), 64)
}

func (p *sdkProcess) close() {
	p.in.Close()
	_ = p.cmd.Wait()
}

// pct is the p-th percentile of xs (nearest rank).
func pct(xs []float64, p float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	i := int(float64(len(s))*p/100+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}
