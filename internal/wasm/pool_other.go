//go:build !linux

package wasm

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// workerPool needs Linux (Pdeathsig, /proc/self/exe, per-thread CPU from
// /proc): elsewhere ModeAuto runs guests in process.
type workerPool struct{}

var errNoWorkers = errors.New("wasm workers are implemented on Linux only: use ModeInProcess")

// poolConfig is unused off Linux.
type poolConfig struct {
	cacheDir     string
	max          int
	uid          int
	cgroupParent string
}

func newWorkerPool(poolConfig, *slog.Logger) (*workerPool, error) { return &workerPool{}, nil }

func (p *workerPool) close(context.Context) error { return nil }

func (p *workerPool) execute(context.Context, *execution) (guestEnd, error, time.Duration, error) {
	return guestEnd{}, nil, 0, errNoWorkers
}

func (p *workerPool) warm(context.Context, []string) error { return errNoWorkers }

func (p *workerPool) compile(context.Context, string, compileLimits) (compiledInfo, error) {
	return compiledInfo{}, errNoWorkers
}
