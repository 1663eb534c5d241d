package tests

import (
	"os"
	"path/filepath"
	"testing"
)

// TestInitBinaryAndFallback: sandboxctl starts each run's init from the
// sandboxd-init beside it (TestMain builds it there, as go install puts
// it), and with SANDBOXD_INIT=reexec re-executes itself instead; the
// confinement is the same either way, and the result says which it was.
// The rest of the suite runs on the init binary.
func TestInitBinaryAndFallback(t *testing.T) {
	requireSandbox(t)
	if warm != nil {
		t.Skip("needs sandboxctl's own cold start, which the warm suite's runs (the daemon's pool) do not have; the cold suite runs this test")
	}
	const code = `
import errno, os, socket
try:
    socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    print("netlink opened")
except OSError as e:
    print("netlink", errno.errorcode[e.errno])
print("fds", sorted(os.listdir("/proc/self/fd")))
print("uid", os.getuid())
print("pid1 environ", repr(open("/proc/1/environ", "rb").read()) if os.access("/proc/1/environ", os.R_OK) else "unreadable")
`
	want := "netlink EAFNOSUPPORT\nfds ['0', '1', '2', '3']\nuid 1000\npid1 environ unreadable\n"
	for _, c := range []struct {
		env  []string
		init string
	}{
		{nil, "sandboxd-init"},
		{[]string{"SANDBOXD_INIT=reexec"}, "reexec"},
	} {
		t.Run(c.init, func(t *testing.T) {
			if _, err := os.Stat(filepath.Join(filepath.Dir(sandboxctl), "sandboxd-init")); c.env == nil && err != nil {
				t.Skip("needs sandboxd-init beside the prebuilt SANDBOXCTL_BIN, which has none:", err)
			}
			r, code := runJSON(t, runSpec{code: code, env: c.env})
			wantStatus(t, r, code, "ok", 0)
			if string(r.Stdout) != want {
				t.Errorf("stdout:\n%s\nwant:\n%s", r.Stdout, want)
			}
			if r.Isolation.Init != c.init || !r.Isolation.Seccomp {
				t.Errorf("isolation %+v: want init %q, seccomp", r.Isolation, c.init)
			}
		})
	}
}
