package spool

import (
	"os"

	"golang.org/x/sys/unix"
)

// openTmpfile opens a file without a name in dir (O_TMPFILE): it never
// appears in the directory, and its blocks are freed when it is closed,
// by whatever ends the process.
func openTmpfile(dir string) (*os.File, error) {
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, &os.PathError{Op: "open O_TMPFILE", Path: dir, Err: err}
	}
	return os.NewFile(uintptr(fd), dir+"/(spool)"), nil
}
