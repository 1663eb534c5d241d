package tests

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sandboxd/sandboxd/internal/isolate"
	"github.com/sandboxd/sandboxd/internal/isolate/nsinit"
	"github.com/sandboxd/sandboxd/internal/testenv"
)

// What a run leaves on the host while it lives, and must not after:
//
//	processes    host uids of the run's slot in the id pool: slot s is
//	             0x60000000 + s*65536 (the sandbox's root, owner of its user
//	             namespace) to that + 65535; the program is that + 1000
//	uid slots    /run/sandboxd-ids/<first uid>.lock, flock(2)ed while the run lives
//	run dirs     /run/sandboxd/runs/<id>/ (with a flock(2)ed lock file)
//	cgroups      <controller>/sandboxd/<id>-<n>
//	mounts       tmpfs "sandboxd-work" on /run/sandboxd/runs/<id>/work and
//	             tmpfs "sandboxd-gen" on /run/sandboxd/runs/<id>/gen, in a
//	             mount namespace of the daemon's or sandboxctl's own
//
// Other people may run sandboxes on the same host while the suite runs,
// in this state dir or in their own. A run whose lock is held by a live
// process is theirs (or ours, still running) and is not a leak; the
// workspace mounts say where each run's directory (and lock) is. Whether a lock is held is read from
// /proc/locks, never by taking it: taking it, even for a moment, would make
// a starting run fail to lock its own directory.

const (
	stateDir     = "/run/sandboxd"
	hostUIDFirst = isolate.DefaultHostUID
	hostUIDCount = isolate.DefaultIDSlots * isolate.IDsPerSandbox
)

var runsDir = filepath.Join(stateDir, "runs")

// heldInodes returns the inodes of every file some process holds a lock on.
func heldInodes() map[uint64]bool {
	held := map[uint64]bool{}
	b, err := os.ReadFile("/proc/locks")
	if err != nil {
		return held
	}
	for _, line := range strings.Split(string(b), "\n") {
		// "1: FLOCK  ADVISORY  WRITE 1234 00:1a:5678 0 EOF"
		f := strings.Fields(line)
		for _, x := range f {
			parts := strings.Split(x, ":")
			if len(parts) == 3 && len(f) > 4 {
				if ino, err := strconv.ParseUint(parts[2], 10, 64); err == nil {
					held[ino] = true
				}
			}
		}
	}
	return held
}

// liveRuns tells a live run from a leftover: a run is live while its lock
// file is locked. Other people's daemons on the host (another engineer's
// tests) keep their runs in other state dirs; their workspace mounts
// ("<state>/runs/<id>/work") say where, so their live runs are not taken
// for this suite's leftovers.
type liveRuns struct {
	held map[uint64]bool
	dirs map[string][]string // run id -> its run directories
}

func newLiveRuns() liveRuns {
	l := liveRuns{held: heldInodes(), dirs: map[string][]string{}}
	for _, m := range workMounts() {
		if filepath.Base(m) == "work" {
			dir := filepath.Dir(m)
			l.dirs[filepath.Base(dir)] = append(l.dirs[filepath.Base(dir)], dir)
		}
	}
	return l
}

// live reports whether run id is alive: its lock file, in /run/sandboxd,
// the warm suite's state dir or wherever its workspace is mounted, is
// locked; or its directory is so new that its owner may not have locked
// it yet.
func (l liveRuns) live(id string) bool {
	dirs := append([]string{filepath.Join(runsDir, id)}, l.dirs[id]...)
	if warm != nil {
		// The warm suite's daemon keeps ready sandboxes in its own state
		// dir: they are live runs, not leftovers.
		dirs = append(dirs, filepath.Join(warm.stateDir, "runs", id))
	}
	for _, dir := range dirs {
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(dir, "lock"), &st); err == nil {
			if l.held[st.Ino] {
				return true
			}
			continue
		}
		if fi, err := os.Stat(dir); err == nil && time.Since(fi.ModTime()) < 2*time.Second {
			return true
		}
	}
	return false
}

// hostProc is a process as the host sees it.
type hostProc struct {
	pid     int
	uid     int
	cmdline string
	cgroup  string // the memory (v1) or unified (v2) cgroup path
}

func (p hostProc) String() string {
	return fmt.Sprintf("pid %d uid %d cgroup %q cmdline %q", p.pid, p.uid, p.cgroup, p.cmdline)
}

// runID is the run id in a sandboxd cgroup path ("/sandboxd/<id>-<n>").
func runIDOfCgroup(path string) string {
	i := strings.Index(path, "/sandboxd/")
	if i < 0 {
		return ""
	}
	rest := path[i+len("/sandboxd/"):]
	rest, _, _ = strings.Cut(rest, "/")
	id, _, _ := strings.Cut(rest, "-")
	return id
}

func readProc(pid int) (hostProc, bool) {
	p := hostProc{pid: pid, uid: -1}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return p, false
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			// real, effective, saved, fs: a process is the sandbox's if
			// any of them is one of its host uids.
			for _, f := range strings.Fields(rest) {
				if u, err := strconv.Atoi(f); err == nil && u >= hostUIDFirst && u < hostUIDFirst+hostUIDCount {
					p.uid = u
				}
			}
			if p.uid < 0 {
				if f := strings.Fields(rest); len(f) > 0 {
					p.uid, _ = strconv.Atoi(f[0])
				}
			}
		}
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil {
		p.cmdline = strings.TrimRight(strings.ReplaceAll(string(b), "\x00", " "), " ")
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid)); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			parts := strings.SplitN(line, ":", 3)
			if len(parts) != 3 {
				continue
			}
			if parts[1] == "memory" || (parts[0] == "0" && p.cgroup == "") {
				p.cgroup = parts[2]
			}
		}
	}
	return p, true
}

func allPids() []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// sandboxProcs lists processes running under the sandbox's host uids, in
// a run cgroup under the default parent, that belong to no live run: after
// a run returned, any of its own is a leak. A sandbox process cannot leave
// its run's cgroup; one under another parent is another runner's (the
// internal packages' tests run theirs under parents of their own, at the
// same time as these).
func sandboxProcs() []hostProc {
	live := newLiveRuns()
	var out []hostProc
	for _, pid := range allPids() {
		p, ok := readProc(pid)
		if !ok || p.uid < hostUIDFirst || p.uid >= hostUIDFirst+hostUIDCount {
			continue
		}
		if id := runIDOfCgroup(p.cgroup); id == "" || live.live(id) {
			continue
		}
		out = append(out, p)
	}
	return out
}

// tokenProcs lists the host's processes whose command line or environment
// carries token. The tests put a unique token in each run that must leave
// nothing behind, so they find its processes whoever else runs sandboxes.
func tokenProcs(token string) []hostProc {
	var out []hostProc
	self := os.Getpid()
	for _, pid := range allPids() {
		if pid == self {
			continue
		}
		found := false
		for _, f := range []string{"cmdline", "environ"} {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, f))
			if err == nil && bytes.Contains(b, []byte(token)) {
				found = true
			}
		}
		if !found {
			continue
		}
		if p, ok := readProc(pid); ok {
			// Our own sandboxctl children carry the token in their argv
			// only when a test put it there; they are not sandbox
			// processes unless their uid says so.
			if p.uid >= hostUIDFirst && p.uid < hostUIDFirst+hostUIDCount {
				out = append(out, p)
			}
		}
	}
	return out
}

// tokenRunProcs is tokenProcs less the processes in no run's cgroup yet:
// a sandbox's init between its clone and its execve still shows its
// parent's argv (which may carry the token) and its parent's cgroup.
func tokenRunProcs(token string) []hostProc {
	return slices.DeleteFunc(tokenProcs(token), func(p hostProc) bool { return runIDOfCgroup(p.cgroup) == "" })
}

// waitGone polls until list returns nothing or d passes; it returns what
// was still there.
func waitGone(d time.Duration, list func() []hostProc) []hostProc {
	deadline := time.Now().Add(d)
	for {
		left := list()
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cgroupParents are the directories under which runs get their cgroups.
func cgroupParents() []string {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return []string{"/sys/fs/cgroup/sandboxd"}
	}
	var out []string
	for _, c := range []string{"memory", "pids", "cpu", "cpuacct", "cpu,cpuacct"} {
		dir := filepath.Join("/sys/fs/cgroup", c, "sandboxd")
		if fi, err := os.Lstat(filepath.Join("/sys/fs/cgroup", c)); err == nil && fi.Mode()&os.ModeSymlink != 0 {
			continue // cpu -> cpu,cpuacct: listed once
		}
		out = append(out, dir)
	}
	return out
}

// runCgroups lists the run cgroup directories of run id, or of every run
// when id is empty.
func runCgroups(id string) []string {
	var out []string
	for _, parent := range cgroupParents() {
		ents, err := os.ReadDir(parent)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if !e.IsDir() {
				continue
			}
			if id == "" || strings.HasPrefix(e.Name(), id+"-") || e.Name() == id {
				out = append(out, filepath.Join(parent, e.Name()))
			}
		}
	}
	return out
}

// workMounts lists the mount points of workspace tmpfs mounts in every
// mount namespace of the host: a daemon keeps its runs' mounts in a
// namespace of its own (internal/isolate, mountns_linux.go).
func workMounts() []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(testenv.Mountinfo("/proc/[0-9]*/task/*")))
	for sc.Scan() {
		// id parent major:minor root mountpoint opts [optional...] - fstype source superopts
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 2 {
			continue
		}
		if qf[1] == "sandboxd-work" || strings.HasPrefix(nsinit.UnescapeMountinfo(pf[4]), runsDir+"/") {
			out = append(out, nsinit.UnescapeMountinfo(pf[4]))
		}
	}
	return out
}

// runIDOfPath is the run id of a path under runsDir.
func runIDOfPath(p string) string {
	rest, ok := strings.CutPrefix(p, runsDir+"/")
	if !ok {
		return ""
	}
	id, _, _ := strings.Cut(rest, "/")
	return id
}

// preexisting holds what hostLeftovers found before the suite started.
var preexisting = map[string]bool{}

// leaks lists everything of a finished run still on the host (processes,
// run directories, cgroups and workspace mounts of runs nobody holds),
// less what was there before the suite started.
func leaks() []string {
	out := hostLeftovers()
	kept := out[:0]
	for _, l := range out {
		if !preexisting[l] {
			kept = append(kept, l)
		}
	}
	return kept
}

// hostLeftovers lists the processes, run directories, cgroups and
// workspace mounts of runs in the default state dir and cgroup parent that
// belong to no live run.
func hostLeftovers() []string {
	live := newLiveRuns()
	var out []string
	for _, p := range sandboxProcs() {
		out = append(out, "process: "+p.String())
	}
	if ents, err := os.ReadDir(runsDir); err == nil {
		for _, e := range ents {
			if !live.live(e.Name()) {
				out = append(out, "run directory: "+filepath.Join(runsDir, e.Name()))
			}
		}
	}
	for _, cg := range runCgroups("") {
		if id := runIDOfCgroup(cg[strings.Index(cg, "/sandboxd/"):]); !live.live(id) {
			out = append(out, "cgroup: "+cg)
		}
	}
	// Only mounts in the default state dir: the daemons the tests start
	// with a state dir of their own check theirs (apiLeaks), and other
	// packages' tests, running at the same time, keep theirs elsewhere.
	for _, m := range workMounts() {
		if !strings.HasPrefix(m, runsDir+"/") {
			continue
		}
		base := filepath.Base(m)
		if id := filepath.Base(filepath.Dir(m)); (base != "work" && base != "gen") || !live.live(id) {
			out = append(out, "workspace mount: "+m)
		}
	}
	return out
}

// waitNoLeaks polls leaks until there are none or d passes.
func waitNoLeaks(d time.Duration) []string {
	deadline := time.Now().Add(d)
	for {
		l := leaks()
		if len(l) == 0 || time.Now().After(deadline) {
			return l
		}
		time.Sleep(100 * time.Millisecond)
	}
}
