package wasm

import (
	"testing"

	"github.com/sandboxd/sandboxd/internal/run"
)

// TestLinearMemoryReused: a mapping kept for the next run is zeroed, past
// the part kept resident too; a guest that fills 80 MiB and one that looks
// for anything left run alternately.
func TestLinearMemoryReused(t *testing.T) {
	eachMode(t, func(t *testing.T, r *Runner) {
		e := Exec{Module: testdata("leftover.wasm"), Argv: []string{"leftover"}, Limits: testLimits()}
		e.Limits.Memory = 128 << 20
		for i := range 4 {
			res := mustRun(t, r, e)
			if res.Status != run.StatusOK {
				t.Fatalf("run %d found memory a previous run left, or failed: %s", i, summary(res))
			}
		}
	})
}
