package seccomp

import (
	"encoding/binary"
	"fmt"

	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
)

// InsnSize is the size of one struct sock_filter: code (u16), jt, jf (u8),
// k (u32), in the machine's byte order.
const InsnSize = 8

// Compile assembles Policy for the architecture this process runs on into
// the bytes of a sock_filter array, ready for seccomp(2) (see nsinit,
// which installs them).
func Compile() ([]byte, error) {
	a, err := arch.GetInfo("")
	if err != nil {
		return nil, fmt.Errorf("seccomp: %w", err)
	}
	prog, _, err := Program(a)
	if err != nil {
		return nil, err
	}
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("assemble bpf: %w", err)
	}
	b := make([]byte, 0, len(raw)*InsnSize)
	for _, ins := range raw {
		b = binary.NativeEndian.AppendUint16(b, ins.Op)
		b = append(b, ins.Jt, ins.Jf)
		b = binary.NativeEndian.AppendUint32(b, ins.K)
	}
	return b, nil
}
