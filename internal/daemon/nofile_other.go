//go:build !unix

package daemon

// nofile: there is no RLIMIT_NOFILE here to hold the connection cap under.
func nofile() (uint64, bool) { return 0, false }
