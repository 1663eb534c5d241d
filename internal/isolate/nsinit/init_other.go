//go:build !linux

package nsinit

// MaybeRun does nothing: the init stage exists only on Linux.
func MaybeRun() {}
