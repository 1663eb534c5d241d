package tests

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/testenv"
)

// cgroupMemory is what the memory cgroup at path (a hostProc's cgroup)
// holds now.
func cgroupMemory(t *testing.T, path string) int64 {
	t.Helper()
	file := filepath.Join("/sys/fs/cgroup/memory", path, "memory.usage_in_bytes")
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		file = filepath.Join("/sys/fs/cgroup", path, "memory.current")
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestSessionDeathFreesMemory: a session whose kernel dies, or that is
// deleted, gives its workspace's memory back at once: Shmem falls by what
// it held, its tmpfs is unmounted, and its file requests then say why it
// died.
func TestSessionDeathFreesMemory(t *testing.T) {
	requireDaemon(t)
	d := startDaemon(t, daemonConfig{})
	const fillMiB = 256
	fill := "with open('fill.bin', 'wb') as f:\n    for _ in range(" + strconv.Itoa(fillMiB) + "):\n        f.write(b'x' * (1 << 20))"
	for _, c := range []struct {
		name string
		end  func(id string)
	}{
		{"the kernel kills itself", func(id string) {
			if c := d.execCell(t, id, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"); c.State != "dead" {
				t.Fatalf("a kernel that killed itself: %s", c)
			}
		}},
		{"the session is deleted", func(id string) {
			if resp, body := d.request(t, "DELETE", "/v1/sessions/"+id, nil, nil); resp.StatusCode != http.StatusNoContent {
				t.Fatalf("DELETE: %s\n%s", resp.Status, body)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			token, env := sessionProcsToken()
			s := d.createSession(t, map[string]any{"env": env, "limits": map[string]any{"memory": "384MiB", "tmpfs": "320MiB", "file_size": "300MiB"}})
			runID := sessionRunID(t, token)
			before := testenv.Shmem(t)
			d.okCell(t, s.ID, fill)
			full := testenv.Shmem(t)
			if full-before < fillMiB<<20*3/4 {
				t.Fatalf("writing %d MiB into the workspace raised Shmem by %d MiB only", fillMiB, (full-before)>>20)
			}
			ended := time.Now()
			c.end(s.ID)
			var freed int64
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				if freed = full - testenv.Shmem(t); freed >= fillMiB<<20*3/4 || time.Now().After(deadline) {
					break
				}
			}
			t.Logf("%d MiB of Shmem freed %s after the end", freed>>20, time.Since(ended).Round(time.Millisecond))
			if freed < fillMiB<<20*3/4 {
				t.Errorf("the session ended, but only %d MiB of its %d MiB workspace were freed", freed>>20, fillMiB)
			}
			requireSessionGone(t, d, token, runID)
		})
	}
}

// TestSessionUploadCharged: an upload is charged to the session's memory
// cgroup; one past the session's memory limit is a 507 naming it, and the
// daemon, the session and a bystander session go on.
func TestSessionUploadCharged(t *testing.T) {
	requireDaemon(t)
	d := startDaemon(t, daemonConfig{args: []string{"--max-body", strconv.Itoa(160 << 20)}})
	token, env := sessionProcsToken()
	s := d.createSession(t, map[string]any{"env": env, "limits": map[string]any{"memory": "256MiB", "tmpfs": "128MiB"}})
	procs := waitProcCount(token, 1, 15*time.Second)
	if len(procs) == 0 {
		t.Fatal("the session's kernel never showed up on the host")
	}
	before := cgroupMemory(t, procs[0].cgroup)
	const size = 64 << 20
	resp, body := d.request(t, "PUT", "/v1/sessions/"+s.ID+"/files/big.bin", bytes.Repeat([]byte("x"), size), nil)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT 64 MiB: %s\n%s", resp.Status, body)
	}
	after := cgroupMemory(t, procs[0].cgroup)
	t.Logf("the session's cgroup: %d MiB before the upload, %d MiB after", before>>20, after>>20)
	if after-before < size*9/10 {
		t.Errorf("a 64 MiB upload raised the session's memory by %d MiB", (after-before)>>20)
	}

	small := d.createSession(t, map[string]any{"limits": map[string]any{"memory": "64MiB", "tmpfs": "256MiB"}})
	resp, body = d.request(t, "PUT", "/v1/sessions/"+small.ID+"/files/big.bin", make([]byte, 128<<20), nil)
	if msg := wantAPIError(t, resp, body, http.StatusInsufficientStorage, "insufficient_storage"); !strings.Contains(msg, "memory limit of 64MiB") {
		t.Errorf("an upload past the session's memory limit: %q; want the limit named", msg)
	}
	if list := d.listFiles(t, small.ID, ""); len(list) != 0 {
		t.Errorf("after the refused upload the session holds %v", list)
	}
	d.okCell(t, small.ID, "1+1")
	if c := d.okCell(t, s.ID, "import os\nos.path.getsize('big.bin')"); c.Result["text/plain"] != strconv.Itoa(size) {
		t.Errorf("the bystander's upload: %s", c)
	}
	if resp, body := d.request(t, "GET", "/healthz", nil, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("the daemon after the refused upload: %s %s", resp.Status, body)
	}
}

// TestSessionCellGate: cells pass an admission gate of their own. With
// one slot and one place in its queue, a cell runs, a second session's
// cell waits, and a third session's is a 429 naming the queue, while the
// first two finish; runs, on their own gate, still run meanwhile.
func TestSessionCellGate(t *testing.T) {
	requireDaemon(t)
	d := startDaemon(t, daemonConfig{args: []string{"--max-concurrent", "1", "--max-queue", "1", "--max-concurrent-cells", "1", "--max-queued-cells", "1"}})
	var ids [3]string
	for i := range ids {
		ids[i] = d.createSession(t, map[string]any{}).ID
	}
	type answer struct {
		status int
		body   []byte
		err    error
	}
	answers := make(chan answer, 2)
	var wg sync.WaitGroup
	exec := func(id, code string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			resp, body, err := d.do(ctx, "POST", "/v1/sessions/"+id+"/exec", mustJSON(t, map[string]any{"code": code, "timeout": "100s"}), nil)
			a := answer{body: body, err: err}
			if resp != nil {
				a.status = resp.StatusCode
			}
			answers <- a
		}()
	}
	exec(ids[0], "import os, time\nwhile not os.path.exists('go'):\n    time.sleep(0.01)\n1+1")
	if _, ok := d.waitGauge(t, 30*time.Second, "sandboxd_session_cells_active", func(v float64) bool { return v == 1 }); !ok {
		t.Fatal("the first cell never took the slot")
	}
	exec(ids[1], "1+1")
	if _, ok := d.waitGauge(t, 30*time.Second, "sandboxd_session_cell_queue_depth", func(v float64) bool { return v == 1 }); !ok {
		t.Fatal("the second cell never waited for the slot")
	}
	// The autoscaler's figure counts the waiting cell with the runs.
	if v := d.gauge(t, "sandboxd_queue_depth"); v != 1 {
		t.Errorf("sandboxd_queue_depth = %v with a cell waiting, want 1", v)
	}
	resp, body := d.request(t, "POST", "/v1/sessions/"+ids[2]+"/exec", []byte(`{"code":"1+1"}`), nil)
	if msg := wantAPIError(t, resp, body, http.StatusTooManyRequests, "too_many_requests"); !strings.Contains(msg, "queue") {
		t.Errorf("a cell past the queue: %q; want the queue named", msg)
	}
	if resp.Header.Get("Retry-After") == "" {
		t.Error("the 429 has no Retry-After")
	}
	if res := d.run(t, pyRun("print(1)", nil)); res.Status != "ok" {
		t.Errorf("a run while the cells' gate is full: %s", res.Status)
	}
	if resp, body := d.request(t, "PUT", "/v1/sessions/"+ids[0]+"/files/go", []byte("go"), nil); resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT go: %s\n%s", resp.Status, body)
	}
	wg.Wait()
	close(answers)
	for a := range answers {
		if a.err != nil || a.status != http.StatusOK || !bytes.Contains(a.body, []byte(`"status":"ok"`)) {
			t.Errorf("an admitted cell: %d %v\n%s", a.status, a.err, tail(a.body))
		}
	}
	d.okCell(t, ids[2], "1+1")
}
