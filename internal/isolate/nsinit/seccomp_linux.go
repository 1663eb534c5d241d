package nsinit

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// installFilter installs the compiled filter (Config.SeccompFilter, the
// bytes of a sock_filter array made by internal/isolate/seccomp) on every
// thread of this process (TSYNC: the Go runtime runs more than one), so
// the program forked next inherits it. no_new_privs must already be set.
func installFilter(raw []byte) error {
	const insn = 8 // sizeof(struct sock_filter)
	if len(raw) == 0 || len(raw)%insn != 0 || len(raw)/insn > unix.BPF_MAXINSNS {
		return fmt.Errorf("seccomp filter of %d bytes is not a program", len(raw))
	}
	filter := make([]unix.SockFilter, len(raw)/insn)
	for i := range filter {
		b := raw[i*insn:]
		filter[i] = unix.SockFilter{
			Code: binary.NativeEndian.Uint16(b[0:]),
			Jt:   b[2],
			Jf:   b[3],
			K:    binary.NativeEndian.Uint32(b[4:]),
		}
	}
	return seccompSetFilter(filter, unix.SECCOMP_FILTER_FLAG_TSYNC)
}
