//go:build !linux

package isolate

import "runtime"

// Doctor reports that the process backend needs Linux.
func Doctor() []Check {
	return []Check{{Name: "linux", Required: true, Detail: "this is " + runtime.GOOS, Fix: "run the process backend on Linux; the wasm backend (not built yet) will run anywhere"}}
}

// DoctorScript is empty off Linux: there is no process backend.
const DoctorScript = ""

// DoctorRunChecks has nothing to read off Linux.
func DoctorRunChecks(string, string) []Check { return nil }
