package wasm

import (
	"sync"

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
//
// A mapping is reused by the next run (see spareMappings): a fresh one
// takes a page fault for every page the guest touches, which here is most
// of a short run's time (python.wasm's 20 MiB initial memory: print(1) in
// 26 ms on fresh mappings, 13.5 ms on a reused one).
type hybridMemory struct {
	c       *memoryCap
	reserve uint64
	heap    heapMemory
	mapped  *mapping // once mapped
}

// mapping is a reservation of address space backing linear memories, one
// at a time.
type mapping struct {
	b []byte
	// dirty bounds what a guest may have written: every byte from dirty
	// on is zero.
	dirty uint64
}

func newLinearMemory(c *memoryCap, reserve, capacity uint64) experimental.LinearMemory {
	m := &hybridMemory{c: c, reserve: reserve}
	m.heap = heapMemory{c: c, max: reserve, buf: make([]byte, 0, min(capacity, reserve, mmapThreshold))}
	return m
}

func (m *hybridMemory) Reallocate(size uint64) []byte {
	if m.mapped == nil && size > mmapThreshold && size <= m.reserve {
		if mp := spares.take(m.reserve); mp != nil {
			copy(mp.b, m.heap.buf)
			mp.dirty = max(mp.dirty, uint64(len(m.heap.buf)))
			m.mapped, m.heap.buf = mp, nil
		}
		// Without address space, the heap will do.
	}
	if m.mapped == nil {
		return m.heap.Reallocate(size)
	}
	if size > m.reserve {
		m.c.refused.Store(true)
		return nil
	}
	if !m.c.grant(size) {
		return nil
	}
	m.mapped.dirty = max(m.mapped.dirty, size)
	return m.mapped.b[:size]
}

func (m *hybridMemory) Free() {
	if m.mapped != nil {
		spares.give(m.mapped)
		m.mapped = nil
	}
	m.heap.Free()
}

// Spare mappings: at most maxSpares are kept between runs, each with at
// most keepResident bytes of pages still mapped, zeroed. What a guest left
// is erased before the mapping is kept, so the next guest, whoever's, sees
// exactly the zeroed memory a fresh mapping would show it; the pages past
// keepResident go back to the kernel (MADV_DONTNEED, which reads as zero
// after), so a run that ballooned does not leave its size behind.
const (
	maxSpares    = 2
	keepResident = 32 << 20
)

var spares spareMappings

type spareMappings struct {
	mu   sync.Mutex
	list []*mapping
}

// take returns a zeroed mapping of at least size bytes, a kept one if one
// is large enough, else a new one; nil when the address space is refused.
func (s *spareMappings) take(size uint64) *mapping {
	s.mu.Lock()
	for i, mp := range s.list {
		if uint64(len(mp.b)) >= size {
			s.list = append(s.list[:i], s.list[i+1:]...)
			s.mu.Unlock()
			return mp
		}
	}
	s.mu.Unlock()
	b, err := unix.Mmap(-1, 0, int(size), unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil
	}
	return &mapping{b: b}
}

// give erases mp and keeps it, or unmaps it when enough are kept: a new
// one replaces the smallest, so the kept ones fit the largest runs.
func (s *spareMappings) give(mp *mapping) {
	keep := min(mp.dirty, keepResident)
	clear(mp.b[:keep])
	if mp.dirty > keep {
		if unix.Madvise(mp.b[keep:mp.dirty], unix.MADV_DONTNEED) != nil {
			_ = unix.Munmap(mp.b)
			return
		}
	}
	mp.dirty = 0
	s.mu.Lock()
	if len(s.list) < maxSpares {
		s.list = append(s.list, mp)
		mp = nil
	} else {
		small := 0
		for i, k := range s.list {
			if len(k.b) < len(s.list[small].b) {
				small = i
			}
		}
		if len(s.list[small].b) < len(mp.b) {
			s.list[small], mp = mp, s.list[small]
		}
	}
	s.mu.Unlock()
	if mp != nil {
		_ = unix.Munmap(mp.b)
	}
}
