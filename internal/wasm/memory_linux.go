package wasm

import (
	"github.com/tetratelabs/wazero/experimental"
	"golang.org/x/sys/unix"
)

// mmapThreshold is the size past which a linear memory moves off the Go
// heap into its own mapping. Below it, a mapping's two system calls cost
// more than copying (a small module runs in tens of microseconds).
const mmapThreshold = 4 << 20

// hybridMemory starts on the Go heap and moves, once, into a private
// anonymous mapping that reserves the whole allowed size without
// committing it (MAP_NORESERVE) when it grows past mmapThreshold: pages
// cost memory only once the guest touches them, growing never copies
// again, and Free gives everything back to the kernel at once, where
// memory on the Go heap would wait for the garbage collector and the
// scavenger. That keeps the host's RSS flat across many runs that balloon
// to their limit.
type hybridMemory struct {
	c       *memoryCap
	reserve uint64
	heap    heapMemory
	mapped  []byte // len = reserve, once mapped
}

func newLinearMemory(c *memoryCap, reserve, capacity uint64) experimental.LinearMemory {
	m := &hybridMemory{c: c, reserve: reserve}
	m.heap = heapMemory{c: c, max: reserve, buf: make([]byte, 0, min(capacity, reserve, mmapThreshold))}
	return m
}

func (m *hybridMemory) Reallocate(size uint64) []byte {
	if m.mapped == nil && size > mmapThreshold && size <= m.reserve {
		b, err := unix.Mmap(-1, 0, int(m.reserve), unix.PROT_READ|unix.PROT_WRITE,
			unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
		if err == nil {
			copy(b, m.heap.buf)
			m.mapped, m.heap.buf = b, nil
		}
		// Without address space, the heap will do.
	}
	if m.mapped == nil {
		return m.heap.Reallocate(size)
	}
	if size > uint64(len(m.mapped)) {
		m.c.refused.Store(true)
		return nil
	}
	if !m.c.grant(size) {
		return nil
	}
	return m.mapped[:size]
}

func (m *hybridMemory) Free() {
	if m.mapped != nil {
		_ = unix.Munmap(m.mapped)
		m.mapped = nil
	}
	m.heap.Free()
}
