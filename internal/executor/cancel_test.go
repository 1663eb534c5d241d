package executor

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/run"
)

// TestCanceledEveryPhase: a caller that goes before its program starts
// (here: before the files are placed) and one that goes while it runs get
// the same result on either backend: status canceled, no error, not an
// internal error.
func TestCanceledEveryPhase(t *testing.T) {
	x := processExecutor(t)
	for _, backend := range []run.Backend{run.BackendProcess, run.BackendWasm} {
		for _, after := range []time.Duration{0, 500 * time.Millisecond} {
			spec := &run.Spec{Runtime: "python", Backend: backend,
				Files: []run.File{{Name: "main.py", Content: []byte("while True: pass")}}}
			p, err := x.Plan(spec)
			if err != nil {
				t.Logf("%s: %v", backend, err)
				continue
			}
			ctx, cancel := context.WithCancel(t.Context())
			if after == 0 {
				cancel()
			} else {
				time.AfterFunc(after, cancel)
			}
			res, err := x.Run(ctx, p, run.Stream{})
			cancel()
			if err != nil || res == nil || res.Status != run.StatusCanceled || res.Error != "" || !strings.HasPrefix(res.Reason, "stopped: the run was canceled") {
				t.Errorf("%s, canceled after %s: %v, %+v", backend, after, err, res)
				continue
			}
			if after == 0 && backend == run.BackendProcess && !strings.HasSuffix(res.Reason, "while its files were placed") {
				t.Errorf("%s, canceled before the run: reason %q", backend, res.Reason)
			}
		}
	}
}
