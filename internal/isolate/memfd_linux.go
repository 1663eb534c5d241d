package isolate

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// sealedFile is a memfd holding b, sealed so that nobody, root included,
// can change it while others read or execute it. An executable one (exec)
// is marked so, MFD_EXEC (Linux 6.3), which a host with
// vm.memfd_noexec=1 requires and older kernels refuse, and is readable
// and executable by all: a sandbox's root, whom the memfd's owner (host
// root) is nobody to, executes it.
func sealedFile(name string, b []byte, exec bool) (*os.File, error) {
	flags := unix.MFD_CLOEXEC | unix.MFD_ALLOW_SEALING
	var fd int
	var err error
	if exec {
		fd, err = unix.MemfdCreate(name, flags|unix.MFD_EXEC)
	}
	if !exec || errors.Is(err, unix.EINVAL) {
		fd, err = unix.MemfdCreate(name, flags)
	}
	if err != nil {
		return nil, os.NewSyscallError("memfd_create", err)
	}
	f := os.NewFile(uintptr(fd), name)
	if _, err := f.Write(b); err != nil {
		f.Close()
		return nil, err
	}
	if exec {
		if err := f.Chmod(0o555); err != nil {
			f.Close()
			return nil, err
		}
	}
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, unix.F_SEAL_WRITE|unix.F_SEAL_GROW|unix.F_SEAL_SHRINK|unix.F_SEAL_SEAL); err != nil {
		f.Close()
		return nil, os.NewSyscallError("fcntl F_ADD_SEALS", err)
	}
	return f, nil
}
