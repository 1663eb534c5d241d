//go:build linux

package nsinit

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// seccompSetFilter calls seccomp(SECCOMP_SET_MODE_FILTER, flags, prog).
func seccompSetFilter(filter []unix.SockFilter, flags uintptr) error {
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, flags, uintptr(unsafe.Pointer(&prog)))
	if errno != 0 {
		return errno
	}
	return nil
}
