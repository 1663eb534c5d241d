package testenv

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// StateDir makes a state directory under /run for one test's process
// backend and names a cgroup parent of its own, to pass as isolate.Config's
// StateDir and CgroupParent. go test runs packages in parallel, and the
// tests of package tests check that nothing is left under the default
// state dir and cgroup parent: a package's runs kept apart cannot be taken
// for another's leftovers, nor the other way round.
//
// Its cleanup, which runs after any registered later (a runner's, a
// daemon's), fails the test if a cgroup is still under the parent after a
// grace period, then removes the parent and the directory.
func StateDir(t testing.TB, name string) (dir, cgroupParent string) {
	t.Helper()
	// Not t.TempDir(): its parents are 0700, and the sandbox's uids must
	// traverse the state dir.
	dir, err := os.MkdirTemp("/run", "sandboxd-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	parent := filepath.Base(dir)
	t.Cleanup(func() {
		if left := removeCgroupParent(parent, 5*time.Second); len(left) > 0 {
			t.Errorf("the test's runs left cgroups behind: %s", strings.Join(left, ", "))
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove state dir: %v", err)
		}
	})
	return dir, parent
}

// removeCgroupParent removes the cgroup parent from every mounted hierarchy,
// waiting up to grace for its children to go. It returns the children that
// did not; it then kills what they hold and removes them, so a failing test
// leaves nothing on the host.
func removeCgroupParent(parent string, grace time.Duration) []string {
	var left []string
	for _, mnt := range cgroupMounts() {
		dir := filepath.Join(mnt, parent)
		deadline := time.Now().Add(grace)
		for {
			children := subdirs(dir)
			if len(children) == 0 || time.Now().After(deadline) {
				for _, c := range children {
					left = append(left, c)
					forceRemove(c)
				}
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		_ = syscall.Rmdir(dir)
	}
	return left
}

// forceRemove kills the processes of a cgroup and removes it, bounded.
func forceRemove(dir string) {
	for range 50 {
		if b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs")); err == nil {
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		if err := syscall.Rmdir(dir); err == nil || errors.Is(err, syscall.ENOENT) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func subdirs(dir string) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out
}

// cgroupMounts lists the mount points of the host's cgroup hierarchies,
// v1 and v2.
func cgroupMounts() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint opts [optional...] - fstype source superopts
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) >= 5 && len(qf) >= 1 && (qf[0] == "cgroup" || qf[0] == "cgroup2") {
			out = append(out, pf[4])
		}
	}
	return out
}
