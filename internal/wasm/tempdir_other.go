//go:build !linux

package wasm

import "os"

// defaultTempDir is the system's temporary directory.
func defaultTempDir() string { return os.TempDir() }
