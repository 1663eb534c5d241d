package isolate

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/sandboxd/sandboxd/internal/isolate/nsinit"
)

// DoctorScript is the sh program `sandboxctl doctor` runs in a sandbox:
// it prints what the run sees of its host ids, its user namespace's
// limits, its rlimits and the host, in sections DoctorRunChecks reads.
const DoctorScript = `echo "== uid_map"; cat /proc/self/uid_map
echo "== user"; for f in /proc/sys/user/*; do echo "${f##*/} $(cat "$f")"; done
echo "== limits"; cat /proc/self/limits
echo "== cmdline"; cat /proc/cmdline
echo "== mountinfo"; cat /proc/self/mountinfo
echo "== end"
`

// limitsLines are the names /proc/PID/limits gives perUserRlimits.
var limitsLines = map[string]string{"sigpending": "Max pending signals", "msgqueue": "Max msgqueue size", "memlock": "Max locked memory"}

// DoctorRunChecks turns DoctorScript's output, from a run on this host,
// into one check per guarantee of a run's own quotas: its host id range,
// its user namespace's limits, its per-user rlimits, and the host facts
// hidden from it. hostMountinfo is the host's own /proc/self/mountinfo.
func DoctorRunChecks(out, hostMountinfo string) []Check {
	sec := sections(out)
	return []Check{runIDs(sec["uid_map"]), runUserLimits(sec["user"]), runRlimits(sec["limits"]), runHostFacts(sec["cmdline"], sec["mountinfo"], hostMountinfo)}
}

// sections splits DoctorScript's output at its "== name" lines.
func sections(out string) map[string]string {
	m := map[string]string{}
	name := ""
	for _, line := range strings.SplitAfter(out, "\n") {
		if n, ok := strings.CutPrefix(line, "== "); ok {
			name = strings.TrimSpace(n)
			continue
		}
		m[name] += line
	}
	return m
}

func runIDs(uidMap string) Check {
	c := Check{Name: "run's host ids", Required: true}
	f := strings.Fields(uidMap)
	last := DefaultHostUID + DefaultIDSlots*IDsPerSandbox - 1
	if len(f) != 3 {
		c.Detail = fmt.Sprintf("a run's uid_map is %q, want one range", strings.TrimSpace(uidMap))
		return c
	}
	base, _ := strconv.Atoi(f[1])
	n, _ := strconv.Atoi(f[2])
	c.OK = f[0] == "0" && n == IDsPerSandbox && base >= DefaultHostUID && base+n-1 <= last && (base-DefaultHostUID)%IDsPerSandbox == 0
	c.Detail = fmt.Sprintf("a run maps its ids 0..%d to host ids %d..%d, a slot of the pool of its own: its per-user quotas are charged to no one else", n-1, base, base+n-1)
	if !c.OK {
		c.Detail = fmt.Sprintf("a run's uid_map is %q, want 0 and a %d-id slot of %d..%d", strings.TrimSpace(uidMap), IDsPerSandbox, DefaultHostUID, last)
	}
	return c
}

func runUserLimits(user string) Check {
	c := Check{Name: "run's user limits", Required: true}
	got := map[string]string{}
	for _, line := range strings.Split(user, "\n") {
		if k, v, ok := strings.Cut(line, " "); ok {
			got[k] = v
		}
	}
	var bad, seen []string
	for _, l := range nsinit.UserLimits {
		v, ok := got[l.Name]
		if !ok {
			continue // this kernel has no such limit (checkUserQuotas says which)
		}
		seen = append(seen, l.Name+"="+v)
		if v != strconv.Itoa(l.Value) {
			bad = append(bad, fmt.Sprintf("%s=%s (want %d)", l.Name, v, l.Value))
		}
	}
	c.OK = len(bad) == 0 && len(seen) > 0
	c.Detail = "in a run, /proc/sys/user: " + strings.Join(seen, " ")
	if len(bad) > 0 {
		c.Detail = "in a run, /proc/sys/user has " + strings.Join(bad, ", ")
	}
	return c
}

func runRlimits(limits string) Check {
	c := Check{Name: "run's rlimits", Required: true}
	var bad, seen []string
	for _, rl := range perUserRlimits {
		want := limitsLines[rl.Name]
		found := false
		for _, line := range strings.Split(limits, "\n") {
			rest, ok := strings.CutPrefix(line, want)
			if !ok {
				continue
			}
			found = true
			f := strings.Fields(rest)
			v := strconv.FormatUint(rl.Value, 10)
			if len(f) < 2 || f[0] != v || f[1] != v {
				bad = append(bad, fmt.Sprintf("%s is %q, want %s", rl.Name, strings.Join(f, " "), v))
			}
			seen = append(seen, rl.Name+"="+v)
		}
		if !found {
			bad = append(bad, rl.Name+" not shown")
		}
	}
	c.OK = len(bad) == 0
	c.Detail = "in a run, soft = hard: " + strings.Join(seen, " ")
	if !c.OK {
		c.Detail = "in a run: " + strings.Join(bad, "; ")
	}
	return c
}

func runHostFacts(cmdline, mountinfo, hostMountinfo string) Check {
	c := Check{Name: "host facts hidden", Required: true}
	var bad []string
	if strings.TrimSpace(cmdline) != "" {
		bad = append(bad, "/proc/cmdline is the host's")
	}
	names, numbers := HostDevices(hostMountinfo)
	for _, line := range strings.Split(mountinfo, "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		if numbers[f[2]] {
			bad = append(bad, "mountinfo shows host device "+f[2]+" at "+f[4])
		}
		for n := range names {
			if strings.Contains(line, n) {
				bad = append(bad, "mountinfo names "+n+" at "+f[4])
			}
		}
	}
	c.OK = len(bad) == 0 && strings.TrimSpace(mountinfo) != ""
	c.Detail = fmt.Sprintf("in a run, /proc/cmdline is empty and mountinfo names none of the host's %d block devices", len(names))
	if len(bad) > 0 {
		c.Detail = "in a run: " + strings.Join(bad, "; ")
		c.Fix = "a host directory with mounts under it is bound as it is (nsinit/hidesource_linux.go); a kernel without overlay for user namespaces (Linux 5.11+) shows every bind's device"
	}
	return c
}

// HostDevices returns the block devices that a host mountinfo shows as
// mount sources (/dev/vda, /dev/mapper/...), and their major:minor.
func HostDevices(mountinfo string) (names, numbers map[string]bool) {
	names, numbers = map[string]bool{}, map[string]bool{}
	for _, line := range strings.Split(mountinfo, "\n") {
		_, after, ok := strings.Cut(line, " - ")
		f, af := strings.Fields(line), strings.Fields(after)
		if !ok || len(af) < 2 || len(f) < 3 || !strings.HasPrefix(af[1], "/dev/") {
			continue
		}
		names[af[1]] = true
		numbers[f[2]] = true
	}
	return names, numbers
}
