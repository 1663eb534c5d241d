//go:build linux

package seccomp

import (
	"fmt"
	"math"

	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Offsets into struct seccomp_data.
const (
	nrOffset   = 0
	archOffset = 4
	argsOffset = 16
)

// auditArchLE is the audit arch flag of a little-endian architecture
// (__AUDIT_ARCH_LE): it says where the low word of a 64-bit argument is.
const auditArchLE = 0x40000000

// x32SyscallBit marks x32 ABI syscall numbers on x86-64 (__X32_SYSCALL_BIT).
const x32SyscallBit = 0x40000000

// Program assembles Policy for the architecture a into a BPF program. Names
// the architecture does not have are left out (they cannot be called there);
// Skipped returns them for the golden test and for doctor.
//
// The program is assembled here rather than by a library because argument
// conditions must compare 32 bits (see ArgCond), and go-seccomp-bpf compares
// every argument as 64 bits: ioctl(fd, TIOCSTI | 1<<32) passed its exact
// compare while the kernel, which reads an unsigned int, saw TIOCSTI. We
// still take the syscall tables from its arch package.
//
// The layout, each rule a block whose jumps stay inside it:
//
//	ld arch; jeq a.ID or kill          a foreign arch (int 0x80) is killed
//	ld nr; jge x32 bit -> ENOSYS       x86-64 only: no second syscall table
//	jeq nr -> action                   one pair per unconditional syscall
//	jeq nr; ld arg; jcond...; action; ld nr
//	                                   per conditional syscall: a failed
//	                                   condition reloads nr and goes on
//	ret allow
func Program(a *arch.Info) (prog []bpf.Instruction, skipped []string, err error) {
	prog = []bpf.Instruction{
		// Calls of a foreign architecture are killed, not let through
		// to the default action, which for a deny list is "allow": a
		// 32-bit int 0x80 call on x86-64 would bypass every rule.
		bpf.LoadAbsolute{Off: archOffset, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(a.ID), SkipTrue: 1},
		bpf.RetConstant{Val: unix.SECCOMP_RET_KILL_PROCESS},
		bpf.LoadAbsolute{Off: nrOffset, Size: 4},
	}
	if a.ID == arch.X86_64.ID {
		prog = append(prog,
			bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: x32SyscallBit, SkipFalse: 1},
			bpf.RetConstant{Val: unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)})
	}
	for _, r := range Policy {
		if r.Reason == "" {
			return nil, nil, fmt.Errorf("seccomp rule %v has no reason", r.Names)
		}
		errno := r.Errno
		if errno == 0 {
			errno = unix.EPERM
		}
		action := bpf.RetConstant{Val: unix.SECCOMP_RET_ERRNO | uint32(errno)}
		for _, name := range r.Names {
			nr, ok := a.SyscallNames[name]
			if !ok {
				skipped = append(skipped, name)
				continue
			}
			block, err := ruleBlock(a, uint32(nr), r.Args, action)
			if err != nil {
				return nil, nil, fmt.Errorf("seccomp rule for %s: %w", name, err)
			}
			prog = append(prog, block...)
		}
	}
	prog = append(prog, bpf.RetConstant{Val: unix.SECCOMP_RET_ALLOW})
	if len(prog) > unix.BPF_MAXINSNS {
		return nil, nil, fmt.Errorf("seccomp program has %d instructions, the kernel takes %d", len(prog), unix.BPF_MAXINSNS)
	}
	return prog, skipped, nil
}

// ruleBlock is the code for one syscall of a rule. It starts and ends with
// the syscall number in the accumulator, so blocks follow each other.
func ruleBlock(a *arch.Info, nr uint32, conds []ArgCond, action bpf.RetConstant) ([]bpf.Instruction, error) {
	if len(conds) == 0 {
		return []bpf.Instruction{
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: nr, SkipFalse: 1},
			action,
		}, nil
	}
	// body runs when nr matched; every condition that fails jumps to its
	// last instruction, the reload of nr.
	var body []bpf.Instruction
	loaded := -1
	for _, c := range conds {
		if c.Index < 0 || c.Index > 5 {
			return nil, fmt.Errorf("argument index %d is not 0-5", c.Index)
		}
		if c.Index != loaded {
			body = append(body, bpf.LoadAbsolute{Off: lowWordOffset(a, c.Index), Size: 4})
			loaded = c.Index
		}
		j, err := condJump(c)
		if err != nil {
			return nil, err
		}
		body = append(body, j)
	}
	body = append(body, action, bpf.LoadAbsolute{Off: nrOffset, Size: 4})
	if len(body) > math.MaxUint8 {
		return nil, fmt.Errorf("%d conditions are too many for one block", len(conds))
	}
	// Point each failed condition at the reload.
	for i, ins := range body {
		if j, ok := ins.(bpf.JumpIf); ok {
			skip := uint8(len(body) - 2 - i)
			if j.SkipTrue == failJump {
				j.SkipTrue = skip
			} else {
				j.SkipFalse = skip
			}
			body[i] = j
		}
	}
	head := bpf.JumpIf{Cond: bpf.JumpEqual, Val: nr, SkipFalse: uint8(len(body))}
	return append([]bpf.Instruction{head}, body...), nil
}

// failJump marks the branch of a condition's jump that leaves the block;
// ruleBlock replaces it with the distance to the block's end.
const failJump = math.MaxUint8

// condJump is the jump that falls through when c holds for the low word in
// the accumulator, and takes failJump when it does not.
func condJump(c ArgCond) (bpf.JumpIf, error) {
	switch c.Op {
	case "eq":
		return bpf.JumpIf{Cond: bpf.JumpEqual, Val: c.Value, SkipFalse: failJump}, nil
	case "ne":
		return bpf.JumpIf{Cond: bpf.JumpEqual, Val: c.Value, SkipTrue: failJump}, nil
	case "bits_set":
		return bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: c.Value, SkipFalse: failJump}, nil
	}
	return bpf.JumpIf{}, fmt.Errorf("unknown seccomp argument operation %q", c.Op)
}

// lowWordOffset is the offset in seccomp_data of the low 32 bits of
// argument i: args are 64-bit, in the machine's byte order.
func lowWordOffset(a *arch.Info, i int) uint32 {
	off := uint32(argsOffset + 8*i)
	if uint32(a.ID)&auditArchLE == 0 {
		off += 4
	}
	return off
}
