// Command e2b measures an E2B sandbox's life through E2B's own SDK
// against a running daemon: Sandbox.create, a first runCode('1+1'),
// kill, one after another, p50 and p99; beside it, measured in the same
// run, the same through sandboxd's session API (POST /v1/sessions, an
// exec of 1+1, DELETE). The difference is what the E2B layer and the
// SDK cost. E2B reports about 150 ms for a cloud sandbox's start alone.
// Needs node and `npm ci --prefix tests/e2b`:
//
//	go run ./bench/e2b -server http://127.0.0.1:8080 -token "$(cat token)" -n 50
package main

import (
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
	// Warm both paths once (the first session builds the kernel's prime).
	if _, err := viaSessions(server, token, 1); err != nil {
		return fmt.Errorf("session API: %w", err)
	}
	native, err := viaSessions(server, token, n)
	if err != nil {
		return fmt.Errorf("session API: %w", err)
	}
	viaSDK, err := viaE2BSDK(server, token, sdkDir, n)
	if err != nil {
		return fmt.Errorf("E2B SDK: %w", err)
	}
	fmt.Printf("create + first 1+1 + kill, %d sandboxes each, one after another\n\n", n)
	fmt.Printf("%-34s %9s %9s\n", "", "p50 ms", "p99 ms")
	fmt.Printf("%-34s %9.1f %9.1f\n", "sandboxd session API (baseline)", pct(native, 50), pct(native, 99))
	fmt.Printf("%-34s %9.1f %9.1f\n", "E2B SDK against /e2b", pct(viaSDK, 50), pct(viaSDK, 99))
	fmt.Printf("\nE2B SDK / session API: p50 %.2fx, p99 %.2fx\n", pct(viaSDK, 50)/pct(native, 50), pct(viaSDK, 99)/pct(native, 99))
	return nil
}

// viaSessions times n session lives through /v1, in ms.
func viaSessions(server, token string, n int) ([]float64, error) {
	var out []float64
	for range n {
		t0 := time.Now()
		var info struct{ ID string }
		if err := call(server, token, "POST", "/v1/sessions", `{"runtime":"python"}`, http.StatusCreated, &info); err != nil {
			return nil, err
		}
		var res struct {
			Result map[string]string `json:"result"`
		}
		if err := call(server, token, "POST", "/v1/sessions/"+info.ID+"/exec", `{"code":"1+1"}`, http.StatusOK, &res); err != nil {
			return nil, err
		}
		if res.Result["text/plain"] != "2" {
			return nil, fmt.Errorf("1+1 answered %v", res.Result)
		}
		if err := call(server, token, "DELETE", "/v1/sessions/"+info.ID, "", http.StatusNoContent, nil); err != nil {
			return nil, err
		}
		out = append(out, float64(time.Since(t0).Microseconds())/1000)
	}
	return out, nil
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

// viaE2BSDK runs sdk.mjs for n sandbox lives, in ms.
func viaE2BSDK(server, token, sdkDir string, n int) ([]float64, error) {
	script, err := filepath.Abs(filepath.Join("bench", "e2b", "sdk.mjs"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("node", script, fmt.Sprint(n))
	cmd.Env = append(os.Environ(), "E2B_SDK_DIR="+sdkDir, "E2B_API_URL="+server+"/e2b", "E2B_SANDBOX_URL="+server+"/e2b", "E2B_API_KEY="+token)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", script, err)
	}
	var times []float64
	if err := json.Unmarshal(out, &times); err != nil {
		return nil, fmt.Errorf("node %s printed %q: %w", script, out, err)
	}
	return times, nil
}

// pct is the p-th percentile of xs (nearest rank).
func pct(xs []float64, p float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	i := int(float64(len(s))*p/100+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}
