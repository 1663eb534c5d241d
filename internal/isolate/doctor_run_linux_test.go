package isolate

import (
	"fmt"
	"strings"
	"testing"
)

// TestDoctorRunChecks: each line doctor derives from a run's view says OK
// for what a run shows on main, and fails for what it showed before
// issue 13 (one shared host uid, host rlimits, the host's disk in
// mountinfo, the boot command line).
func TestDoctorRunChecks(t *testing.T) {
	host := "26 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n21 26 0:20 / /proc rw - proc proc rw\n"
	user := "max_inotify_instances 128\nmax_user_namespaces 0\n"
	good := fmt.Sprintf("== uid_map\n         0 %d      65536\n== user\n%s== limits\n"+
		"Max locked memory         8388608              8388608              bytes\n"+
		"Max pending signals       1024                 1024                 signals\n"+
		"Max msgqueue size         819200               819200               bytes\n"+
		"== cmdline\n== mountinfo\n73 70 0:43 / /usr ro - overlay sandbox ro,lowerdir=/usr:/proc/self/fd/7\n== end\n",
		DefaultHostUID+3*IDsPerSandbox, user)
	for _, c := range DoctorRunChecks(good, host) {
		if !c.OK {
			t.Errorf("%s fails on a good run: %s", c.Name, c.Detail)
		}
	}
	bad := "== uid_map\n         0 1001000      1\n== user\nmax_inotify_instances 8192\n== limits\n" +
		"Max locked memory         8388608              8388608              bytes\n" +
		"Max pending signals       96367                96367                signals\n" +
		"Max msgqueue size         819200               819200               bytes\n" +
		"== cmdline\nroot=/dev/vda console=ttyS0\n== mountinfo\n71 70 254:0 /usr /usr ro - ext4 /dev/vda rw\n== end\n"
	checks := DoctorRunChecks(bad, host)
	if len(checks) != 4 {
		t.Fatalf("%d checks, want 4", len(checks))
	}
	for _, c := range checks {
		if c.OK {
			t.Errorf("%s passes a run that had host root's quotas and the host's facts: %s", c.Name, c.Detail)
		}
	}
	if d := checks[3].Detail; !strings.Contains(d, "/dev/vda") || !strings.Contains(d, "254:0") || !strings.Contains(d, "cmdline") {
		t.Errorf("host facts detail does not say what showed: %s", d)
	}
}
