//go:build !linux

package isolate

// NoInheritedFiles does nothing where the process backend does not run.
func NoInheritedFiles() {}
