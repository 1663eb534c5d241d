package testenv

import (
	"os"
	"path/filepath"
)

// Mountinfo is the mountinfo of every distinct mount namespace that a task
// matching pattern is in, concatenated: "/proc/self/task/*" for this
// process's threads, "/proc/[0-9]*/task/*" for the host's. The process
// backend keeps the runs' mounts in a mount namespace of its own, held by
// one thread (internal/isolate, mountns_linux.go), so a leak check that
// read only the caller's /proc/self/mountinfo would see none of them.
func Mountinfo(pattern string) string {
	tasks, _ := filepath.Glob(pattern)
	seen := map[string]bool{}
	var all []byte
	for _, task := range tasks {
		ns, err := os.Readlink(filepath.Join(task, "ns", "mnt"))
		if err != nil || seen[ns] {
			continue
		}
		b, err := os.ReadFile(filepath.Join(task, "mountinfo"))
		if err != nil {
			continue
		}
		seen[ns] = true
		all = append(all, b...)
	}
	return string(all)
}
