package wasm

import (
	"context"
	"os"
	"testing"
)

// TestMain lets the test binary serve as a wasm worker: a runner in
// ModeWorker re-executes /proc/self/exe, which here is this binary. The
// shared runners are closed at the end, which stops their workers and
// removes their directories.
func TestMain(m *testing.M) {
	MaybeRun()
	code := m.Run()
	sharedMu.Lock()
	for _, r := range sharedRunners {
		if err := r.Close(context.Background()); err != nil {
			code = 1
		}
	}
	sharedMu.Unlock()
	os.Exit(code)
}
