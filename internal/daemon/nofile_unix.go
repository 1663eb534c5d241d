//go:build unix

package daemon

import "syscall"

// nofile is the process's soft RLIMIT_NOFILE. Go (since 1.19) has already
// raised it to the hard limit when the process started, and puts the
// original back for the programs it execs, so this is the most fds the
// daemon can have open.
func nofile() (uint64, bool) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0, false
	}
	return r.Cur, true
}
