package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// rnd is the random part of a well-formed session id.
var rnd = strings.Repeat("a", 26)

// peerNet is the network a forwarding replica sees in these tests: the
// host "b" is a live peer (an httptest server), "gone" does not resolve,
// "stopped" has nothing listening and "stuck" times out. Every dial is
// recorded, so a test can say none was made.
type peerNet struct {
	live    string // the live peer's address
	stopped string // a loopback address nobody listens on
	mu      sync.Mutex
	dials   []string
}

func (n *peerNet) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	n.mu.Lock()
	n.dials = append(n.dials, addr)
	n.mu.Unlock()
	host, _, _ := net.SplitHostPort(addr)
	var d net.Dialer
	switch host {
	case "b":
		return d.DialContext(ctx, network, n.live)
	case "stopped":
		return d.DialContext(ctx, network, n.stopped)
	case "stuck":
		return nil, &net.OpError{Op: "dial", Net: network, Err: os.ErrDeadlineExceeded}
	}
	return nil, &net.OpError{Op: "dial", Net: network, Err: &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}}
}

func (n *peerNet) dialed() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.dials...)
}

// forwardingServer is replica "here" with token "tok", forwarding to the
// peers of pn by the template http://{replica}:80, served over loopback.
func forwardingServer(t *testing.T, peer http.Handler) (*httptest.Server, *peerNet) {
	t.Helper()
	live := httptest.NewServer(peer)
	t.Cleanup(live.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pn := &peerNet{live: live.Listener.Addr().String(), stopped: ln.Addr().String()}
	ln.Close()
	f, err := NewForwarder("http://{replica}:80", &http.Transport{DialContext: pn.dial}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	s := newServer(newFake(), Config{Tokens: []string{"tok"}, Sessions: newManager(t), Forward: f, AllowAnyHost: true})
	a := httptest.NewServer(s)
	t.Cleanup(a.Close)
	return a, pn
}

func send(t *testing.T, ctx context.Context, method, url, body string, hdr ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestForwardReachesPeer: a request for a session of replica "b" reaches
// b as sent (method, path, query, body, token), marked as forwarded by
// "here", and b's answer comes back whole.
func TestForwardReachesPeer(t *testing.T) {
	got := make(chan *http.Request, 1)
	peer := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(strings.NewReader(string(b)))
		got <- r
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTeapot)
		fmt.Fprintf(w, `{"echo":%q}`, b)
	})
	a, _ := forwardingServer(t, peer)
	id := "b-" + rnd
	resp := send(t, t.Context(), "PUT", a.URL+"/v1/sessions/"+id+"/files/dir/x.txt?mode=0755", "file body", "Authorization", "Bearer tok")
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusTeapot || body != `{"echo":"file body"}` {
		t.Fatalf("answer %s %q, want b's own", resp.Status, body)
	}
	r := <-got
	if r.Method != "PUT" || r.URL.Path != "/v1/sessions/"+id+"/files/dir/x.txt" || r.URL.RawQuery != "mode=0755" {
		t.Errorf("b got %s %s", r.Method, r.URL)
	}
	if r.Header.Get("Authorization") != "Bearer tok" || r.Header.Get(ForwardedHeader) != "here" || r.Host != "b:80" {
		t.Errorf("b got Authorization %q, %s %q, Host %q", r.Header.Get("Authorization"), ForwardedHeader, r.Header.Get(ForwardedHeader), r.Host)
	}
	b, _ := io.ReadAll(r.Body)
	if string(b) != "file body" {
		t.Errorf("b got body %q", b)
	}
}

// TestForwardNot: what is not forwarded, and no dial is made for it: a
// request without the token (401 here), one already forwarded (a loop),
// this replica's own sessions, ids that are not ours in shape (a client
// cannot steer the forwarder to a host of its choosing), and paths that
// name no session.
func TestForwardNot(t *testing.T) {
	peer := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { t.Errorf("b was reached: %s %s", r.Method, r.URL) })
	a, pn := forwardingServer(t, peer)
	auth := []string{"Authorization", "Bearer tok"}
	for _, tc := range []struct {
		name, path string
		hdr        []string
		status     int
		replica    string // the Sandboxd-Replica of the answer
	}{
		{"no token", "/v1/sessions/b-" + rnd, nil, 401, ""},
		{"wrong token", "/v1/sessions/b-" + rnd + "/exec", []string{"Authorization", "Bearer nope"}, 401, ""},
		{"already forwarded", "/v1/sessions/b-" + rnd, append([]string{ForwardedHeader, "c"}, auth...), 404, "b"},
		{"own session", "/v1/sessions/here-" + rnd, auth, 404, ""},
		{"host in id", "/v1/sessions/evil.example.com-" + rnd, auth, 404, ""},
		{"port in id", "/v1/sessions/evil:80-" + rnd, auth, 404, ""},
		{"encoded host", "/v1/sessions/evil%2Eexample%3A80-" + rnd, auth, 404, ""},
		{"made-up id", "/v1/sessions/my-session", auth, 404, ""},
		{"list", "/v1/sessions", auth, 200, ""},
		{"runtimes", "/v1/runtimes", auth, 200, ""},
	} {
		resp := send(t, t.Context(), "GET", a.URL+tc.path, "", tc.hdr...)
		body := readAll(t, resp)
		if resp.StatusCode != tc.status || resp.Header.Get(ReplicaHeader) != tc.replica {
			t.Errorf("%s: %s (%s %q) %s, want %d", tc.name, resp.Status, ReplicaHeader, resp.Header.Get(ReplicaHeader), body, tc.status)
		}
	}
	if d := pn.dialed(); len(d) > 0 {
		t.Errorf("dialed %v", d)
	}
}

// TestForwardStreams: a streamed answer reaches the client line by line as
// the peer sends it, not at its end; and a client that goes away cancels
// the peer's request (on the peer, that interrupts the cell).
func TestForwardStreams(t *testing.T) {
	release := make(chan struct{})
	canceled := make(chan struct{})
	peer := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		fmt.Fprintln(w, `{"type":"stdout","data":"first\n"}`)
		w.(http.Flusher).Flush()
		select {
		case <-release:
			fmt.Fprintln(w, `{"type":"stdout","data":"second\n"}`)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			close(canceled)
		case <-time.After(30 * time.Second):
		}
	})
	a, _ := forwardingServer(t, peer)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	resp := send(t, ctx, "POST", a.URL+"/v1/sessions/b-"+rnd+"/exec?stream=1", `{"code":"1"}`, "Authorization", "Bearer tok")
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "application/x-ndjson" {
		t.Fatalf("%s %s", resp.Status, ct)
	}
	lines := bufio.NewReader(resp.Body)
	// The peer holds its second line until the client has the first.
	if l, err := lines.ReadString('\n'); err != nil || !strings.Contains(l, "first") {
		t.Fatalf("first line %q, %v", l, err)
	}
	close(release)
	if l, err := lines.ReadString('\n'); err != nil || !strings.Contains(l, "second") {
		t.Fatalf("second line %q, %v", l, err)
	}
	cancel()
	select {
	case <-canceled:
	case <-time.After(10 * time.Second):
		t.Fatal("the peer's request went on after the client went away")
	}
}

// TestForwardPeerGone: a peer that cannot serve is a clear error naming
// the replica, and says whether its sessions are gone (404: its name does
// not resolve, or nothing listens) or it may answer later (503).
func TestForwardPeerGone(t *testing.T) {
	a, _ := forwardingServer(t, http.NotFoundHandler())
	for _, tc := range []struct {
		replica, code string
		status        int
		says          string
	}{
		{"gone", "not_found", 404, `lived on replica "gone", which is gone (gone:80 does not resolve`},
		{"stopped", "not_found", 404, `lived on replica "stopped", which is gone (nothing listens at stopped:80`},
		{"stuck", "unavailable", 503, `lives on replica "stuck", which did not answer at stuck:80`},
	} {
		id := tc.replica + "-" + rnd
		resp := send(t, t.Context(), "POST", a.URL+"/v1/sessions/"+id+"/exec", `{"code":"1"}`, "Authorization", "Bearer tok")
		var eb ErrorBody
		if err := json.Unmarshal([]byte(readAll(t, resp)), &eb); err != nil {
			t.Fatal(err)
		}
		if msg := eb.Error.Message; resp.StatusCode != tc.status || eb.Error.Code != tc.code || !strings.Contains(msg, tc.says) || !strings.Contains(msg, id) {
			t.Errorf("%s: %s %+v, want %d %s saying %q", tc.replica, resp.Status, eb.Error, tc.status, tc.code, tc.says)
		}
		if r := resp.Header.Get(ReplicaHeader); r != tc.replica {
			t.Errorf("%s: %s %q", tc.replica, ReplicaHeader, r)
		}
	}
}

func TestCheckPeerTemplate(t *testing.T) {
	for _, tc := range []struct {
		tmpl string
		ok   bool
	}{
		{"http://{replica}.sandboxd-headless:8080", true},
		{"http://{replica}.sandboxd-headless.default.svc.cluster.local:8080/", true},
		{"https://{replica}:8443", true},
		{"http://{replica}", true},
		{"http://sandboxd-headless:8080", false},
		{"ftp://{replica}:21", false},
		{"http://x:8080/{replica}", false},
		{"http://x:8080?r={replica}", false},
		{"http://{replica}:8080/api", false},
		{"http://user@{replica}:8080", false},
		{"http://x:{replica}", false},
		{"{replica}:8080", false},
	} {
		if err := CheckPeerTemplate(tc.tmpl); (err == nil) != tc.ok {
			t.Errorf("CheckPeerTemplate(%q) = %v, want ok=%v", tc.tmpl, err, tc.ok)
		}
	}
}
