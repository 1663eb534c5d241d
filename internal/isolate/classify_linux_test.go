package isolate

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/isolate/nsinit"
	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
)

func TestClassify(t *testing.T) {
	l := limits.Defaults()
	exited := func(code int) *nsinit.ExitStatus { return &nsinit.ExitStatus{Code: code} }
	signaled := func(sig int) *nsinit.ExitStatus { return &nsinit.ExitStatus{Code: -1, Signal: sig} }
	cases := []struct {
		name   string
		reason killReason
		exit   *nsinit.ExitStatus
		oom    int
		peak   int64
		cpu    time.Duration
		ctxErr error
		want   run.Status
		code   int
	}{
		{"ok", killNone, exited(0), 0, 0, 0, nil, run.StatusOK, 0},
		{"exited", killNone, exited(3), 0, 0, 0, nil, run.StatusExited, 3},
		{"signaled", killNone, signaled(11), 0, 0, 0, nil, run.StatusSignaled, -1},
		{"timeout wins over the SIGKILL it caused", killTimeout, signaled(9), 0, 0, 0, nil, run.StatusTimeout, -1},
		{"cpu poll", killCPU, nil, 0, 0, 11 * time.Second, nil, run.StatusCPULimit, -1},
		{"output", killOutput, signaled(9), 0, 0, 0, nil, run.StatusOutputLimit, -1},
		{"oom killed the program", killNone, signaled(9), 1, 0, 0, nil, run.StatusMemoryLimit, -1},
		{"oom killed a child, program failed", killNone, exited(1), 1, 0, 0, nil, run.StatusMemoryLimit, 1},
		{"oom killed a child, program still ok", killNone, exited(0), 1, 0, 0, nil, run.StatusOK, 0},
		{"oom killed init", killNone, nil, 1, 0, 0, nil, run.StatusMemoryLimit, -1},
		{"oom far below the run's own limit: the parent's", killNone, signaled(9), 1, 64 << 20, 0, nil, run.StatusMemoryLimit, -1},
		{"rlimit cpu backstop SIGXCPU", killNone, signaled(24), 0, 0, 11 * time.Second, nil, run.StatusCPULimit, -1},
		{"rlimit cpu backstop SIGKILL", killNone, signaled(9), 0, 0, 12 * time.Second, nil, run.StatusCPULimit, -1},
		{"plain SIGKILL is signaled", killNone, signaled(9), 0, 0, time.Second, nil, run.StatusSignaled, -1},
		{"file size", killNone, signaled(25), 0, 0, 0, nil, run.StatusSignaled, -1},
		{"caller canceled", killCanceled, signaled(9), 0, 0, 0, context.Canceled, run.StatusCanceled, -1},
		{"caller deadline", killCanceled, signaled(9), 0, 0, 0, context.DeadlineExceeded, run.StatusTimeout, -1},
		{"init died silently", killNone, nil, 0, 0, 0, nil, run.StatusInternalError, -1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			peak := c.peak
			if c.want == run.StatusMemoryLimit && peak == 0 {
				peak = int64(l.Memory) // a run at its own limit
			}
			res := &run.Result{ExitCode: -1, OOMKills: c.oom, CPUTime: c.cpu, PeakMemory: peak}
			classify(res, c.reason, c.exit, Exec{Limits: l}, c.ctxErr)
			if res.Status != c.want || res.ExitCode != c.code {
				t.Errorf("status %s exit %d, want %s exit %d", res.Status, res.ExitCode, c.want, c.code)
			}
			if res.Status.LimitHit() && res.Reason == "" {
				t.Errorf("limit status %s without a reason", res.Status)
			}
			if shared := strings.Contains(res.Reason, "all sandboxes together"); shared != (c.peak > 0) {
				t.Errorf("reason %q: blames the shared limit %v, want %v", res.Reason, shared, c.peak > 0)
			}
		})
	}
}
