package isolate

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"

	"github.com/sandboxd/sandboxd/internal/limits"
)

// HostMemory is the most memory this process's host and cgroup can give:
// MemTotal of /proc/meminfo, capped by the lowest memory limit of the
// cgroup this process runs in and its ancestors (v1 or v2). from says
// which of them it is, for a log line. A daemon's memory budget is at most
// this unless its operator asks for more.
func HostMemory() (n limits.Bytes, from string, err error) {
	total, err := memTotal("/proc/meminfo")
	if err != nil {
		return 0, "", err
	}
	root, rel, file, err := ownMemoryCgroup()
	if err != nil {
		return 0, "", fmt.Errorf("find this process's memory cgroup: %w", err)
	}
	lim, at, err := lowestLimit(root, rel, file)
	if err != nil {
		return 0, "", err
	}
	if lim > 0 && lim < total {
		return lim, at, nil
	}
	return total, "MemTotal of /proc/meminfo", nil
}

// memTotal reads MemTotal from a meminfo file ("MemTotal:  24683748 kB").
func memTotal(meminfo string) (limits.Bytes, error) {
	b, err := os.ReadFile(meminfo)
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			break
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || kb <= 0 || kb > 1<<53 {
			break
		}
		return limits.Bytes(kb) * limits.KiB, nil
	}
	return 0, fmt.Errorf("%s: no MemTotal line in kB", meminfo)
}

// ownMemoryCgroup is where this process's memory limits are: the mount
// point of the hierarchy with the memory controller, the process's cgroup
// in it and the limit file's name.
func ownMemoryCgroup() (root, rel, file string, err error) {
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", "", "", err
	}
	if cgroups.Mode() == cgroups.Unified {
		rel, ok := cgroupPath(string(self), "")
		if !ok {
			return "", "", "", errors.New("/proc/self/cgroup has no cgroup v2 line")
		}
		return "/sys/fs/cgroup", rel, "memory.max", nil
	}
	rel, ok := cgroupPath(string(self), "memory")
	if !ok {
		return "", "", "", errors.New("/proc/self/cgroup has no memory controller line")
	}
	subs, err := cgroup1.Default()
	if err != nil {
		return "", "", "", err
	}
	for _, s := range subs {
		if p, ok := s.(interface{ Path(string) string }); ok && s.Name() == cgroup1.Memory {
			return p.Path("/"), rel, "memory.limit_in_bytes", nil
		}
	}
	return "", "", "", fmt.Errorf("%w: cgroup v1 controller %q is not mounted", ErrUnsupported, cgroup1.Memory)
}

// cgroupPath finds the cgroup of a /proc/<pid>/cgroup listing on the v1
// hierarchy that has controller, or on v2 when controller is "" (lines
// "4:memory:/a/b", "0::/a/b").
func cgroupPath(listing, controller string) (string, bool) {
	for _, line := range strings.Split(listing, "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		if controller == "" && f[0] == "0" && f[1] == "" {
			return f[2], true
		}
		if controller != "" {
			for _, c := range strings.Split(f[1], ",") {
				if c == controller {
					return f[2], true
				}
			}
		}
	}
	return "", false
}

// lowestLimit is the lowest memory limit (file, in each cgroup from rel up
// to root) and the file that sets it; 0 when none does. An absent file
// (v2's root) or "max" is no limit. rel cannot lead out of root.
func lowestLimit(root, rel, file string) (limits.Bytes, string, error) {
	var lowest limits.Bytes
	var at string
	dir := filepath.Join(root, filepath.Clean("/"+rel))
	for {
		p := filepath.Join(dir, file)
		b, err := os.ReadFile(p)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return 0, "", err
		default:
			s := strings.TrimSpace(string(b))
			if s != "max" {
				n, err := strconv.ParseInt(s, 10, 64)
				if err != nil || n < 0 {
					return 0, "", fmt.Errorf("parse %s: %q is not a size", p, s)
				}
				if lowest == 0 || limits.Bytes(n) < lowest {
					lowest, at = limits.Bytes(n), p
				}
			}
		}
		if dir == root || dir == "/" {
			return lowest, at, nil
		}
		dir = filepath.Dir(dir)
	}
}
