package tests

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"
)

// TestSessionInterrupt: POST .../interrupt ends the running cell as
// Ctrl-C in a notebook does (a KeyboardInterrupt, status error), the
// cell's own request answers with it, and the session goes on; with no
// cell running it says so.
func TestSessionInterrupt(t *testing.T) {
	requireDaemon(t)
	d := startDaemon(t, daemonConfig{})
	s := d.createSession(t, nil)
	interrupt := func() bool {
		t.Helper()
		resp, body := d.request(t, "POST", "/v1/sessions/"+s.ID+"/interrupt", nil, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("interrupt: %s\n%s", resp.Status, body)
		}
		var v struct {
			Interrupted bool `json:"interrupted"`
		}
		if err := json.Unmarshal(body, &v); err != nil {
			t.Fatalf("interrupt answer %s: %v", body, err)
		}
		return v.Interrupted
	}
	if interrupt() {
		t.Errorf("an idle session says a cell was interrupted")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	resp, err := d.streamCell(ctx, s.ID, mustJSON(t, map[string]any{"code": "import time\nprint('in', flush=True)\ntime.sleep(50)", "timeout": "60s"}), nil, "?stream=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	var res *cellResult
	var stdout []byte
	sent := false
	for sc.Scan() {
		ev, err := decodeCellEvent(sc.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case ev.Type == "stdout":
			// print writes "in" and "\n" apart when unbuffered: the cell
			// runs once both are in, and the kernel takes the interrupt.
			if stdout = append(stdout, ev.Data...); string(stdout) == "in\n" && !sent {
				sent = true
				if !interrupt() {
					t.Errorf("a running cell was not interrupted")
				}
			}
		case ev.Type == "result":
			res = ev.Result
		}
	}
	if res == nil {
		t.Fatalf("no result: %v", sc.Err())
	}
	if res.Status != "error" || res.Error == nil || res.Error.Name != "KeyboardInterrupt" || res.State != "idle" || res.WallTime > 30*time.Second {
		t.Fatalf("interrupted cell: %s", res)
	}
	if c := d.okCell(t, s.ID, "6*7"); c.Result["text/plain"] != "42" {
		t.Errorf("after the interrupt: %s", c)
	}
}
