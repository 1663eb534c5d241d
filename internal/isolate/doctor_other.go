//go:build !linux

package isolate

import "runtime"

// Doctor reports that the process backend needs Linux.
func Doctor() []Check {
	return []Check{{Name: "linux", Required: true, Detail: "this is " + runtime.GOOS, Fix: "run the process backend on Linux; the wasm backend (not built yet) will run anywhere"}}
}
