package wasm

import (
	"sync/atomic"

	"github.com/tetratelabs/wazero/experimental"
)

// wasmPage is the size of a WebAssembly memory page.
const wasmPage = 64 << 10

// memoryCap is one run's memory allocator: it backs the guest's linear
// memory, refuses to grow it past limit bytes, and records the peak size
// and whether a grow was refused. wazero's own WithMemoryLimitPages is a
// property of the whole runtime; this is per instantiation, so every run
// has its own limit under one shared runtime and compilation cache.
//
// A refused grow is what the guest sees as memory.grow returning -1: malloc
// returns NULL, CPython raises MemoryError, QuickJS throws "out of memory",
// and a C program may trap. The run is then classified memory_limit.
type memoryCap struct {
	limit   uint64
	refused atomic.Bool
	peak    atomic.Uint64
	// grown, if set, is told each new peak (a worker reports it to the
	// runner, which may kill the worker before the run ends).
	grown func(size uint64)
}

func newMemoryCap(limit uint64) *memoryCap {
	// Round down to whole pages: the guest can only grow by pages.
	return &memoryCap{limit: limit / wasmPage * wasmPage}
}

// Allocate implements experimental.MemoryAllocator. max is what the module
// declares (4 GiB when it declares none); the backing reservation is the
// smaller of max and the limit.
func (c *memoryCap) Allocate(capacity, max uint64) experimental.LinearMemory {
	return newLinearMemory(c, min(max, c.limit), capacity)
}

// grant reports whether the memory may become size bytes.
func (c *memoryCap) grant(size uint64) bool {
	if size > c.limit {
		c.refused.Store(true)
		return false
	}
	for {
		p := c.peak.Load()
		if size <= p {
			return true
		}
		if c.peak.CompareAndSwap(p, size) {
			if c.grown != nil {
				c.grown(size)
			}
			return true
		}
	}
}

// heapMemory is a linear memory on the Go heap, grown by copying (as
// wazero's default is). It is the fallback where the address space cannot
// be reserved up front.
type heapMemory struct {
	c   *memoryCap
	max uint64
	buf []byte
}

func (m *heapMemory) Reallocate(size uint64) []byte {
	if size > m.max {
		m.c.refused.Store(true)
		return nil
	}
	if !m.c.grant(size) {
		return nil
	}
	if size <= uint64(cap(m.buf)) {
		m.buf = m.buf[:size]
		return m.buf
	}
	n := min(max(size, 2*uint64(cap(m.buf))), m.max)
	nb := make([]byte, size, n)
	copy(nb, m.buf)
	m.buf = nb
	return m.buf
}

func (m *heapMemory) Free() { m.buf = nil }
