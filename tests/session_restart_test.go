package tests

import (
	"net/http"
	"regexp"
	"syscall"
	"testing"
	"time"
)

// TestSessionDaemonSIGKILL: SIGKILL the daemon while it holds a session
// with a background process. Every process of the session dies with it;
// the next daemon on the same state dir sweeps the session's directory,
// mount and cgroups at start, and does not know the session (404, never a
// new one under the old id).
func TestSessionDaemonSIGKILL(t *testing.T) {
	requireDaemon(t)
	stateDir := newStateDir(t)
	d := startDaemon(t, daemonConfig{stateDir: stateDir})
	token, env := sessionProcsToken()
	s := d.createSession(t, map[string]any{"env": env})
	d.okCell(t, s.ID, "import subprocess\nbg = subprocess.Popen(['sleep', '1000'], start_new_session=True)\nopen('kept.txt', 'w').write('x')")
	runID := sessionRunID(t, token)
	if procs := waitProcCount(token, 2, 15*time.Second); len(procs) < 2 {
		t.Fatalf("want the kernel and its sleep on the host, found %v", procs)
	}

	d.signal(t, syscall.SIGKILL)
	if _, ok := d.wait(5 * time.Second); !ok {
		t.Fatal("sandboxd did not die of SIGKILL")
	}
	if left := waitGone(5*time.Second, func() []hostProc { return tokenProcs(token) }); len(left) > 0 {
		t.Errorf("5s after the daemon was SIGKILLed, processes of its session live: %v", left)
	}
	if left := runLeftovers(stateDir, runID); len(left) == 0 {
		t.Errorf("the killed daemon left nothing of the session: the sweep below proves nothing")
	}

	d2 := startDaemon(t, daemonConfig{stateDir: stateDir})
	if left := runLeftovers(stateDir, runID); len(left) > 0 {
		t.Errorf("the restarted daemon serves, but the session's leftovers are still there: %v", left)
	}
	if d2.waitLog(regexp.MustCompile(`sweeping leftover run.*`+runID), 2*time.Second) == "" {
		t.Errorf("the restarted daemon did not log sweeping the session's sandbox %s", runID)
	}
	resp, body := d2.request(t, "POST", "/v1/sessions/"+s.ID+"/exec", []byte(`{"code":"1"}`), nil)
	wantAPIError(t, resp, body, http.StatusNotFound, "not_found")
	if c := d2.okCell(t, d2.createSession(t, nil).ID, "6*7"); c.Result["text/plain"] != "42" {
		t.Errorf("a new session on the restarted daemon: %s", c)
	}
}
