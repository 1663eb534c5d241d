//go:build !linux

package wasm

import "context"

// ProbeWorker needs Linux: workers are implemented there only.
func ProbeWorker(context.Context, uint64) (WorkerStatus, error) {
	return WorkerStatus{}, errNoWorkers
}
