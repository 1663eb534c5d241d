package nsinit

import "syscall"

// setRlimits sets each limit's soft and hard value. syscall.Setrlimit (not
// x/sys/unix) is used on purpose: for RLIMIT_NOFILE it tells the Go runtime
// not to restore its own start-up limit in the program it forks.
func setRlimits(rls []Rlimit) error {
	for _, rl := range rls {
		lim := syscall.Rlimit{Cur: rl.Value, Max: rl.Value}
		if err := syscall.Setrlimit(rl.Resource, &lim); err != nil {
			return step("setrlimit "+rl.Name, err)
		}
	}
	return nil
}
