package nsinit

import (
	"fmt"

	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// installFilter installs Policy on every thread of this process (TSYNC: the
// Go runtime runs more than one), so the program forked next inherits it.
// no_new_privs must already be set.
func installFilter() error {
	a, err := arch.GetInfo("")
	if err != nil {
		return err
	}
	prog, _, err := Program(a)
	if err != nil {
		return err
	}
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return fmt.Errorf("assemble bpf: %w", err)
	}
	filter := make([]unix.SockFilter, len(raw))
	for i, ins := range raw {
		filter[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	return seccompSetFilter(filter, unix.SECCOMP_FILTER_FLAG_TSYNC)
}
