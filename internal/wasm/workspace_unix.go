//go:build unix

package wasm

import (
	"errors"
	"syscall"
)

// noFollow makes opening a symlink fail (ELOOP) instead of following it,
// and keeps a fifo from blocking the open.
const noFollow = syscall.O_NOFOLLOW | syscall.O_NONBLOCK

func isLoop(err error) bool { return errors.Is(err, syscall.ELOOP) }
