package nsinit

import "golang.org/x/sys/unix"

// dropBoundingSet removes every capability from the bounding set and clears
// the ambient set, so no execve in the run can ever gain one back (file
// capabilities included). init keeps its effective set for the setuid of the
// fork that starts the program; the setuid to a non-zero uid clears it there.
func dropBoundingSet() error {
	for c := 0; c < 64; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			if err == unix.EINVAL {
				// Past the kernel's last capability.
				break
			}
			return err
		}
	}
	return unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
}
