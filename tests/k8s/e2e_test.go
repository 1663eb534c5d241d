//go:build k8s

// Package k8s is the end-to-end test of deploy/kubernetes on a real
// one-node cluster: tests/k8s/run.sh builds and brings up the cluster
// (cluster.sh), runs this test inside the cluster's network namespace with
// KUBECONFIG set and kubectl on PATH, and tears the cluster down. The
// build tag keeps it out of go test ./..., which has no cluster.
package k8s

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// overlay is deploy/kubernetes sized for the test node (overlay/).
const overlay = "overlay"

func TestMain(m *testing.M) {
	if os.Getenv("KUBECONFIG") == "" {
		fmt.Fprintln(os.Stderr, "tests/k8s: KUBECONFIG is not set: run tests/k8s/run.sh, which brings up the cluster this test needs")
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// kubectl runs kubectl with args (an argv, no shell) and returns its
// stdout; a failure fails the test with kubectl's stderr.
func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := kubectlErr(args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func kubectlErr(args ...string) (string, error) {
	// Past the longest wait a command is given (rollout status, 5m).
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "kubectl", args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// eventually polls f every interval until it returns nil or d passes; it
// fails the test with f's last error.
func eventually(t *testing.T, what string, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, d, err)
		}
		time.Sleep(time.Second)
	}
}

// api is a client of sandboxd through a Service address.
type api struct {
	base, token string
	http        *http.Client
}

// at is a client of the same token for one pod, at its address ip.
func (a *api) at(ip string) *api {
	return &api{base: "http://" + net.JoinHostPort(ip, "8080"), token: a.token, http: a.http}
}

// do sends a request and returns its status, header and body.
func (a *api) do(method, path string, body any) (int, http.Header, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b, err
}

// must sends a request that must answer want, and decodes its answer into
// out (if not nil).
func (a *api) must(t *testing.T, want int, method, path string, body, out any) []byte {
	t.Helper()
	code, _, b, err := a.do(method, path, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	if code != want {
		t.Fatalf("%s %s: %d %s; want %d", method, path, code, b, want)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
	return b
}

type runResult struct {
	Status    string `json:"status"`
	Reason    string `json:"reason"`
	ExitCode  int    `json:"exit_code"`
	Stdout    string `json:"stdout"`
	Stderr    string `json:"stderr"`
	Isolation struct {
		Backend    string   `json:"backend"`
		Namespaces []string `json:"namespaces"`
		Cgroup     string   `json:"cgroup"`
		Seccomp    bool     `json:"seccomp"`
		NoNewPrivs bool     `json:"no_new_privs"`
	} `json:"isolation"`
}

type cellResult struct {
	Status string            `json:"status"`
	Result map[string]string `json:"result"`
	Error  *struct {
		Name, Value string
	} `json:"error"`
}

func (a *api) run(t *testing.T, code string, limits map[string]any) runResult {
	t.Helper()
	var r runResult
	body := map[string]any{"runtime": "python", "code": code}
	if limits != nil {
		body["limits"] = limits
	}
	a.must(t, http.StatusOK, "POST", "/v1/runs", body, &r)
	return r
}

func (a *api) newSession(t *testing.T) string {
	t.Helper()
	var s struct{ ID string }
	a.must(t, http.StatusCreated, "POST", "/v1/sessions", map[string]any{"runtime": "python"}, &s)
	return s.ID
}

// sessionOn creates sessions through the Service until one lands on
// replica (the Service picks), deleting the others.
func (a *api) sessionOn(t *testing.T, replica string) string {
	t.Helper()
	for range 40 {
		id := a.newSession(t)
		if strings.HasPrefix(id, replica+"-") {
			return id
		}
		a.must(t, http.StatusNoContent, "DELETE", "/v1/sessions/"+id, nil, nil)
	}
	t.Fatalf("40 sessions made through the Service, none on %s", replica)
	return ""
}

func (a *api) cell(t *testing.T, id, code string) cellResult {
	t.Helper()
	var c cellResult
	a.must(t, http.StatusOK, "POST", "/v1/sessions/"+id+"/exec", map[string]any{"code": code}, &c)
	if c.Status != "ok" {
		t.Fatalf("cell %q in %s: %+v", code, id, c)
	}
	return c
}

// podIPs maps the sandboxd pods' names to their addresses.
func podIPs(t *testing.T) map[string]string {
	t.Helper()
	out := kubectl(t, "get", "pods", "-l", "app.kubernetes.io/name=sandboxd", "-o", `jsonpath={range .items[*]}{.metadata.name}={.status.podIP}{"\n"}{end}`)
	ips := map[string]string{}
	for _, line := range strings.Fields(out) {
		if name, ip, ok := strings.Cut(line, "="); ok && ip != "" {
			ips[name] = ip
		}
	}
	return ips
}

// metric sums a metric's samples whose labels contain match, over the
// /metrics of every sandboxd pod.
func (a *api) metric(t *testing.T, name, match string) float64 {
	t.Helper()
	var sum float64
	for pod, ip := range podIPs(t) {
		p := a.at(ip)
		code, _, b, err := p.do("GET", "/metrics", nil)
		if err != nil || code != http.StatusOK {
			t.Fatalf("/metrics of %s: %d %v", pod, code, err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if !strings.HasPrefix(line, name) || !strings.Contains(line, match) {
				continue
			}
			f := strings.Fields(line)
			if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
				sum += v
			}
		}
	}
	return sum
}

func replicas(t *testing.T) (spec, ready int) {
	t.Helper()
	out := strings.Fields(kubectl(t, "get", "statefulset", "sandboxd", "-o", "jsonpath={.spec.replicas} {.status.readyReplicas}"))
	if len(out) > 0 {
		spec, _ = strconv.Atoi(out[0])
	}
	if len(out) > 1 {
		ready, _ = strconv.Atoi(out[1])
	}
	return spec, ready
}

// load sends runs through the Service from workers clients until stopped,
// and counts what came back: every request must succeed, or get a 429
// with Retry-After (then the client waits as told and tries again).
type load struct {
	a                          *api
	ok, refused, failed, total atomic.Int64
	mu                         sync.Mutex
	failures                   []string
	stop                       chan struct{}
	wg                         sync.WaitGroup
}

func startLoad(a *api, workers int, code string) *load {
	l := &load{a: a, stop: make(chan struct{})}
	for range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				l.total.Add(1)
				code, h, b, err := a.do("POST", "/v1/runs", map[string]any{"runtime": "python", "code": code})
				var r runResult
				switch {
				case err != nil:
					l.fail("error: %v", err)
				case code == http.StatusTooManyRequests:
					l.refused.Add(1)
					secs, err := strconv.Atoi(h.Get("Retry-After"))
					if err != nil || secs <= 0 {
						l.fail("429 without a usable Retry-After (%q): %s", h.Get("Retry-After"), b)
						secs = 1
					}
					time.Sleep(time.Duration(secs) * time.Second)
				case code != http.StatusOK:
					l.fail("%d %s", code, b)
				case json.Unmarshal(b, &r) != nil || r.Status != "ok":
					l.fail("run: %s", b)
				default:
					l.ok.Add(1)
				}
			}
		}()
	}
	return l
}

func (l *load) fail(format string, args ...any) {
	l.failed.Add(1)
	l.mu.Lock()
	if len(l.failures) < 10 {
		l.failures = append(l.failures, fmt.Sprintf(format, args...))
	}
	l.mu.Unlock()
}

// end stops the load and fails t if any request failed.
func (l *load) end(t *testing.T, what string) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	t.Logf("%s: %d requests, %d ok, %d refused with 429, %d failed", what, l.total.Load(), l.ok.Load(), l.refused.Load(), l.failed.Load())
	if l.failed.Load() > 0 {
		t.Errorf("%s: %d requests failed, first: %q", what, l.failed.Load(), l.failures)
	}
	if l.ok.Load() == 0 {
		t.Errorf("%s: no request succeeded", what)
	}
}

func TestSandboxdOnKubernetes(t *testing.T) {
	tok := make([]byte, 16)
	if _, err := rand.Read(tok); err != nil {
		t.Fatal(err)
	}
	token := hex.EncodeToString(tok)
	kubectl(t, "create", "secret", "generic", "sandboxd-token", "--from-literal=token="+token)
	kubectl(t, "apply", "-k", overlay)
	kubectl(t, "rollout", "status", "statefulset/sandboxd", "--timeout=5m")
	kubectl(t, "rollout", "status", "deployment/sandboxd-metrics-adapter", "--timeout=3m")
	ip := strings.TrimSpace(kubectl(t, "get", "service", "sandboxd", "-o", "jsonpath={.spec.clusterIP}"))
	// Each request on a connection of its own, as from many clients: the
	// Service (kube-proxy) picks a replica per connection, so a
	// keep-alive would send every request to the replica its first one
	// reached, and nothing would cross replicas.
	a := &api{base: "http://" + net.JoinHostPort(ip, "8080"), token: token, http: &http.Client{
		Timeout:   2 * time.Minute,
		Transport: &http.Transport{DisableKeepAlives: true},
	}}
	eventually(t, "the Service answers", time.Minute, func() error {
		code, _, b, err := a.do("GET", "/readyz", nil)
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("%d %s", code, b)
		}
		return err
	})

	t.Run("isolation in a pod", func(t *testing.T) { isolation(t, a, ip) })
	t.Run("host ids across pods", func(t *testing.T) { hostIDs(t, a) })
	t.Run("a session across replicas", func(t *testing.T) { sessionAcrossReplicas(t, a) })
	t.Run("autoscaling on queue depth", func(t *testing.T) { autoscaling(t, a) })
	t.Run("a pod deleted by hand", func(t *testing.T) { podDeleted(t, a) })
}

// isolation: a run in a pod has all its namespaces, its cgroup, seccomp
// and no_new_privs; it cannot reach the Service it came through nor read
// the pod's token; and its memory limit holds.
func isolation(t *testing.T, a *api, serviceIP string) {
	code := `import socket
status = dict(l.split(':\t', 1) for l in open('/proc/self/status').read().splitlines() if ':\t' in l)
print('seccomp', status['Seccomp'].strip(), 'nnp', status['NoNewPrivs'].strip())
try:
    open('/etc/sandboxd/token').read()
    print('token read')
except OSError as e:
    print('token', type(e).__name__)
s = socket.socket()
s.settimeout(3)
try:
    s.connect(('` + serviceIP + `', 8080))
    print('service reached')
except OSError as e:
    print('service', type(e).__name__)
`
	r := a.run(t, code, nil)
	if r.Status != "ok" {
		t.Fatalf("run: %+v", r)
	}
	if want := "seccomp 2 nnp 1\ntoken FileNotFoundError\nservice OSError\n"; r.Stdout != want {
		t.Errorf("inside the sandbox: %q; want %q (stderr %q)", r.Stdout, want, r.Stderr)
	}
	iso := r.Isolation
	for _, ns := range []string{"user", "pid", "mount", "network", "ipc", "uts", "cgroup"} {
		if !strings.Contains(","+strings.Join(iso.Namespaces, ",")+",", ","+ns+",") {
			t.Errorf("the run has no %s namespace: %v", ns, iso.Namespaces)
		}
	}
	if iso.Backend != "process" || iso.Cgroup == "" || !iso.Seccomp || !iso.NoNewPrivs {
		t.Errorf("isolation %+v: want the process backend with a cgroup, seccomp and no_new_privs", iso)
	}
	// 256 MiB touched under a 64 MiB limit.
	r = a.run(t, "b = bytearray(256 << 20)\nprint('allocated')", map[string]any{"memory": "64MiB"})
	if r.Status != "memory_limit" || strings.Contains(r.Stdout, "allocated") {
		t.Errorf("256 MiB under a 64 MiB limit: status %q, stdout %q; want memory_limit", r.Status, r.Stdout)
	}
	if r := a.run(t, "b = bytearray(16 << 20)\nprint('allocated')", map[string]any{"memory": "64MiB"}); r.Status != "ok" {
		t.Errorf("16 MiB under a 64 MiB limit: %+v", r)
	}
}

// hostIDs: a run alive in one pod holds its host id range against every
// sandboxd on the node. Each sandboxd takes a range by locking a file per
// range in /run/sandboxd-ids; in each pod's own /run, two pods could take
// the same range. The StatefulSet mounts the node's directory there: while
// a run on sandboxd-0 lives, its range's lock file is held as seen from
// sandboxd-1.
func hostIDs(t *testing.T, a *api) {
	ips := podIPs(t)
	p := a.at(ips["sandboxd-0"])
	prog := "import time\nm = [l.split() for l in open('/proc/self/uid_map')]\nprint(min(int(f[1]) for f in m))\ntime.sleep(8)"
	done := make(chan runResult, 1)
	go func() {
		var r runResult
		code, _, b, err := p.do("POST", "/v1/runs", map[string]any{"runtime": "python", "code": prog})
		if err != nil || code != http.StatusOK || json.Unmarshal(b, &r) != nil {
			r.Status = fmt.Sprintf("%d %v %s", code, err, b)
		}
		done <- r
	}()
	time.Sleep(3 * time.Second)
	// The lock files sandboxd-1 finds held: its own and sandboxd-0's.
	held := kubectl(t, "exec", "sandboxd-1", "--", "python3", "-c", `import fcntl, os
d = '/run/sandboxd-ids'
for n in sorted(os.listdir(d)):
    with open(os.path.join(d, n)) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(n)
`)
	r := <-done
	if r.Status != "ok" {
		t.Fatalf("the run on sandboxd-0: %+v", r)
	}
	lock := strings.TrimSpace(r.Stdout) + ".lock"
	if !slices.Contains(strings.Fields(held), lock) {
		t.Errorf("a run on sandboxd-0 has host uid range %s, whose lock sandboxd-1 does not see held (it sees %q): two pods could give two live sandboxes the same host ids", lock, held)
	} else {
		t.Logf("sandboxd-1 sees the lock of sandboxd-0's run (%s) held, among %d", lock, len(strings.Fields(held)))
	}
}

// sessionAcrossReplicas: a session made through the Service keeps its
// state over 30 cells sent through the Service, whichever replica each
// reaches (requests for the other replica's session are forwarded).
func sessionAcrossReplicas(t *testing.T, a *api) {
	if _, ready := replicas(t); ready < 2 {
		t.Fatalf("%d replicas ready, want 2", ready)
	}
	before := a.metric(t, "sandboxd_requests_forwarded_total", `outcome="answered"`)
	id := a.newSession(t)
	for i := 1; i <= 30; i++ {
		c := a.cell(t, id, "n = globals().get('n', 0) + 1\nn")
		if got := c.Result["text/plain"]; got != strconv.Itoa(i) {
			t.Fatalf("cell %d: n = %q; the session lost its state", i, got)
		}
	}
	if fwd := a.metric(t, "sandboxd_requests_forwarded_total", `outcome="answered"`) - before; fwd < 1 {
		t.Errorf("30 cells through the Service, %v forwarded between replicas: the test did not cross replicas", fwd)
	} else {
		t.Logf("30 cells, %v of them forwarded to the replica holding the session", fwd)
	}
	a.must(t, http.StatusNoContent, "DELETE", "/v1/sessions/"+id, nil, nil)
}

// autoscaling: a bounded load raises queue depth and the HPA adds a
// replica; a session on that replica keeps working while it drains at
// scale-down and then reports it is gone, clearly; no request of the load
// fails.
func autoscaling(t *testing.T, a *api) {
	eventually(t, "the custom metrics API serves sandboxd_queue_depth", 3*time.Minute, func() error {
		_, err := kubectlErr("get", "--raw", "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/*/sandboxd_queue_depth?labelSelector=app.kubernetes.io%2Fname%3Dsandboxd")
		return err
	})
	// The HPA starts at rest, at 2, or the scale-up below would prove
	// nothing.
	eventually(t, "the HPA rests at 2 replicas before the load", 3*time.Minute, func() error {
		out := kubectl(t, "get", "hpa", "sandboxd", "-o", "jsonpath={.status.currentReplicas} {.status.desiredReplicas}")
		if spec, _ := replicas(t); out != "2 2" || spec != 2 {
			return fmt.Errorf("HPA current and desired %q, StatefulSet %d", out, spec)
		}
		return nil
	})
	// 10 clients of 1.5 s runs against 2 replicas of one slot each: about
	// 4 runs wait on each, twice the HPA's target of 2.
	heavy := startLoad(a, 10, "import time; time.sleep(1.5)")
	start := time.Now()
	eventually(t, "the HPA scales the StatefulSet to 3 ready replicas", 4*time.Minute, func() error {
		if spec, ready := replicas(t); spec < 3 || ready < 3 {
			return fmt.Errorf("replicas %d, ready %d; HPA: %s", spec, ready, kubectl(t, "get", "hpa", "sandboxd", "-o", "jsonpath={.status}"))
		}
		return nil
	})
	t.Logf("scaled to 3 ready replicas %s after the load began", time.Since(start).Round(time.Second))
	heavy.end(t, "the load that scaled up")

	// A session on the replica that scale-down removes (the highest
	// ordinal), and a light load through the scale-down.
	id := a.sessionOn(t, "sandboxd-2")
	a.cell(t, id, "x = 41")
	light := startLoad(a, 1, "print(1)")
	eventually(t, "the HPA scales back to 2 after the load", 4*time.Minute, func() error {
		if spec, _ := replicas(t); spec != 2 {
			return fmt.Errorf("replicas %d", spec)
		}
		return nil
	})
	// sandboxd-2 drains (--drain 30s): its session still answers.
	if c := a.cell(t, id, "x + 1"); c.Result["text/plain"] != "42" {
		t.Errorf("a cell while its replica drains: %+v", c)
	}
	eventually(t, "sandboxd-2 is gone", 3*time.Minute, func() error {
		if _, err := kubectlErr("get", "pod", "sandboxd-2"); err == nil {
			return errors.New("still there")
		}
		return nil
	})
	gone(t, a, id, "sandboxd-2")
	light.end(t, "the load through the scale-down")
}

// gone checks that session id, whose replica ended, gets a clear error
// naming that replica and saying the session is gone. For the few seconds
// the cluster takes to forget a removed pod (its endpoints, then DNS), a
// peer may instead answer 503 "did not answer ... try again"; a client
// does as told, and so does this, for up to a minute.
func gone(t *testing.T, a *api, id, replica string) {
	t.Helper()
	var last string
	eventually(t, "a clear 404 for a session of "+replica, time.Minute, func() error {
		code, _, b, err := a.do("POST", "/v1/sessions/"+id+"/exec", map[string]any{"code": "1"})
		if err != nil {
			return err
		}
		last = fmt.Sprintf("%d %s", code, bytes.TrimSpace(b))
		var e struct {
			Error struct{ Code, Message string }
		}
		_ = json.Unmarshal(b, &e)
		msg := e.Error.Message
		switch {
		case code == http.StatusServiceUnavailable && strings.Contains(msg, "try again"):
			t.Logf("transient: %s", last)
			return errors.New(last)
		case code != http.StatusNotFound || !strings.Contains(msg, replica) ||
			!(strings.Contains(msg, "gone") || strings.Contains(msg, "restarts")):
			t.Fatalf("a cell in a session of %s after it ended: %s; want a 404 naming the replica and saying the session is gone", replica, last)
		}
		return nil
	})
	t.Logf("a cell in a session of the ended %s: %s", replica, last)
}

// podDeleted: a replica's pod deleted by hand comes back under its name;
// its old session is reported gone with a clear error, and new sessions
// and runs work throughout.
func podDeleted(t *testing.T, a *api) {
	id := a.sessionOn(t, "sandboxd-1")
	a.cell(t, id, "y = 1")
	uid := kubectl(t, "get", "pod", "sandboxd-1", "-o", "jsonpath={.metadata.uid}")
	light := startLoad(a, 1, "print(1)")
	kubectl(t, "delete", "pod", "sandboxd-1", "--wait=false")
	eventually(t, "sandboxd-1 is back, a new pod, ready", 4*time.Minute, func() error {
		out, err := kubectlErr("get", "pod", "sandboxd-1", "-o", `jsonpath={.metadata.uid} {.status.conditions[?(@.type=="Ready")].status}`)
		if err != nil {
			return err
		}
		if f := strings.Fields(out); len(f) != 2 || f[0] == uid || f[1] != "True" {
			return fmt.Errorf("pod: %q", out)
		}
		return nil
	})
	gone(t, a, id, "sandboxd-1")
	s := a.newSession(t)
	if c := a.cell(t, s, "6 * 7"); c.Result["text/plain"] != "42" {
		t.Errorf("a new session's cell: %+v", c)
	}
	a.must(t, http.StatusNoContent, "DELETE", "/v1/sessions/"+s, nil, nil)
	light.end(t, "the load through the pod's deletion")
}
