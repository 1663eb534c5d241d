//go:build !linux

package wasm

import "github.com/tetratelabs/wazero/experimental"

func newLinearMemory(c *memoryCap, reserve, capacity uint64) experimental.LinearMemory {
	return &heapMemory{c: c, max: reserve, buf: make([]byte, 0, min(capacity, reserve))}
}
