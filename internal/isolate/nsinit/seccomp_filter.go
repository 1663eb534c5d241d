//go:build linux

package nsinit

import (
	"fmt"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// offset of seccomp_data.arch
const archOffset = 4

// Program assembles Policy for the architecture a into a BPF program. Names
// the architecture does not have are left out (they cannot be called there);
// Skipped returns them for the golden test and for doctor.
func Program(a *arch.Info) (prog []bpf.Instruction, skipped []string, err error) {
	p := seccomp.Policy{DefaultAction: seccomp.ActionAllow}
	for _, r := range Policy {
		if r.Reason == "" {
			return nil, nil, fmt.Errorf("seccomp rule %v has no reason", r.Names)
		}
		errno := r.Errno
		if errno == 0 {
			errno = unix.EPERM
		}
		g := seccomp.SyscallGroup{Action: seccomp.ActionErrno | seccomp.Action(errno)}
		for _, name := range r.Names {
			if _, ok := a.SyscallNames[name]; !ok {
				skipped = append(skipped, name)
				continue
			}
			if len(r.Args) == 0 {
				g.Names = append(g.Names, name)
				continue
			}
			nc := seccomp.NameWithConditions{Name: name}
			for _, c := range r.Args {
				op, err := operation(c.Op)
				if err != nil {
					return nil, nil, err
				}
				nc.Conditions = append(nc.Conditions, seccomp.Condition{Argument: uint32(c.Index), Operation: op, Value: c.Value})
			}
			g.NamesWithCondtions = append(g.NamesWithCondtions, nc)
		}
		if len(g.Names)+len(g.NamesWithCondtions) > 0 {
			p.Syscalls = append(p.Syscalls, g)
		}
	}
	body, err := p.Assemble()
	if err != nil {
		return nil, nil, fmt.Errorf("assemble seccomp policy: %w", err)
	}
	// go-seccomp-bpf lets calls of a foreign architecture through to the
	// default action, which for a deny list is "allow": a 32-bit int 0x80
	// call on x86-64 would bypass every rule. Kill on any other arch first.
	guard := []bpf.Instruction{
		bpf.LoadAbsolute{Off: archOffset, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(a.ID), SkipTrue: 1},
		bpf.RetConstant{Val: uint32(seccomp.ActionKillProcess)},
	}
	return append(guard, body...), skipped, nil
}

func operation(op string) (seccomp.Operation, error) {
	switch op {
	case "bits_set":
		return seccomp.BitsSet, nil
	case "eq":
		return seccomp.Equal, nil
	case "ne":
		return seccomp.NotEqual, nil
	}
	return "", fmt.Errorf("unknown seccomp argument operation %q", op)
}
