//go:build !unix

package wasm

// noFollow: os.Root refuses links that leave the root on every platform;
// the guest cannot create any (see workspaceFS).
const noFollow = 0

func isLoop(error) bool { return false }
