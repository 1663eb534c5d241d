package isolate

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"sync"
)

// Once a sandbox's program runs, init has nothing left to do but reap:
// wait for the program, reaping the orphans reparented to it on the way,
// and send the program's status. Yet a Go init holds a Go runtime's
// memory while it waits: about 1 MiB of a session's 5.5 (five threads,
// the heap its setup grew), for the session's whole life. So init, once
// it has sent the program's pid, executes the reaper in its place: a
// static executable of some 400 bytes, no runtime, no heap, that does
// what init's wait did (nsinit's reap) and holds 8 KiB of stack.
//
// The reaper is machine code (testdata/reaper_amd64.s, assembled into
// reaperCode and checked by TestReaperCode) wrapped in an ELF header here,
// so the module still builds with the Go toolchain alone. The runner
// writes it once per process into a sealed memfd that every init gets as
// an extra fd and executes by /proc/self/fd/N. On an architecture without
// reaperCode, or where the memfd cannot be made, init waits itself, as
// before; init falls back the same way if the exec fails.

// reaperBase is where the reaper's one segment is loaded.
const reaperBase = 0x400000

// reaperELF wraps code in a static ELF executable for machine: one
// read-only, executable segment holding the headers and code, entered at
// code's first byte, and a non-executable stack.
func reaperELF(machine elf.Machine, code []byte) []byte {
	const ehsize, phentsize, phnum = 64, 56, 2
	headers := ehsize + phentsize*phnum
	size := uint64(headers + len(code))
	var b bytes.Buffer
	hdr := elf.Header64{
		Type:      uint16(elf.ET_EXEC),
		Machine:   uint16(machine),
		Version:   uint32(elf.EV_CURRENT),
		Entry:     reaperBase + uint64(headers),
		Phoff:     ehsize,
		Ehsize:    ehsize,
		Phentsize: phentsize,
		Phnum:     phnum,
	}
	copy(hdr.Ident[:], elf.ELFMAG)
	hdr.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	hdr.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	hdr.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	progs := [phnum]elf.Prog64{
		{Type: uint32(elf.PT_LOAD), Flags: uint32(elf.PF_R | elf.PF_X), Vaddr: reaperBase, Paddr: reaperBase, Filesz: size, Memsz: size, Align: 0x1000},
		{Type: uint32(elf.PT_GNU_STACK), Flags: uint32(elf.PF_R | elf.PF_W)},
	}
	_ = binary.Write(&b, binary.LittleEndian, &hdr)
	_ = binary.Write(&b, binary.LittleEndian, &progs)
	b.Write(code)
	return b.Bytes()
}

// processReaper is the process's reaper, shared by every Runner of the
// process (a test binary makes many): sealed, it never changes, and one
// held fd serves them all.
var processReaper = sync.OnceValues(openReaper)

// openReaper writes the reaper into a memfd, sealed so that nobody, root
// included, can change it while inits execute it, and returns it; nil and
// no error where there is no reaperCode.
func openReaper() (*os.File, error) {
	if reaperCode == nil {
		return nil, nil
	}
	f, err := sealedFile("sandboxd-reaper", reaperELF(reaperMachine, reaperCode), true)
	if err != nil {
		return nil, fmt.Errorf("make the reaper's memfd: %w", err)
	}
	return f, nil
}

// checkReaper says whether PID 1 of each sandbox can become the reaper.
func checkReaper() Check {
	c := Check{Name: "reaper"}
	f, err := openReaper()
	switch {
	case err != nil:
		c.Detail = "cannot be made (" + err.Error() + "): each sandbox's init waits for its program itself, holding about 1 MiB more"
		c.Fix = "allow executable memfds (sysctl vm.memfd_noexec=0)"
	case f == nil:
		c.Detail = "none for " + runtime.GOARCH + ": each sandbox's init waits for its program itself, holding about 1 MiB more"
	default:
		f.Close()
		c.OK = true
		c.Detail = "once the program runs, PID 1 is a sealed 400-byte executable holding 8 KiB, not init's Go runtime"
	}
	return c
}
