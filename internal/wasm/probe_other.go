//go:build !linux

package wasm

import "context"

// WorkerStatus is what the kernel says of a wasm worker (Linux only).
type WorkerStatus struct {
	PID                      int
	Uid, Gid                 string
	CapEff, CapPrm           string
	NoNewPrivs               string
	Seccomp                  string
	Threads, ThreadsFiltered int
	Cgroup                   string
	MemoryLimit              uint64
	InCgroup                 bool
}

// ProbeWorker needs Linux: workers are implemented there only.
func ProbeWorker(context.Context, uint64) (WorkerStatus, error) {
	return WorkerStatus{}, errNoWorkers
}
