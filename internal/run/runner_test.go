package run

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestSetCanceled: a caller's going is canceled, a passed deadline a
// timeout, a canceler's own cause the reason; none is an internal error.
func TestSetCanceled(t *testing.T) {
	shutdown := errors.New("the daemon shut down")
	for _, c := range []struct {
		cause  error
		status Status
		reason string
	}{
		{context.Canceled, StatusCanceled, "stopped: the run was canceled by its caller"},
		{fmt.Errorf("wrapped: %w", context.Canceled), StatusCanceled, "stopped: the run was canceled by its caller"},
		{context.DeadlineExceeded, StatusTimeout, "stopped: the caller's deadline passed"},
		{shutdown, StatusCanceled, "stopped: the daemon shut down"},
	} {
		res := InternalError(errors.New("sandbox setup: context canceled"))
		res.SetCanceled(c.cause)
		if res.Status != c.status || res.Reason != c.reason || res.Error != "" {
			t.Errorf("%v: status %s, reason %q, error %q", c.cause, res.Status, res.Reason, res.Error)
		}
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(shutdown)
	res := Canceled(context.Cause(ctx), "it waited for a slot")
	if res.Status != StatusCanceled || res.Reason != "stopped: the daemon shut down while it waited for a slot" || res.ExitCode != -1 || res.Stdout == nil {
		t.Errorf("Canceled: %+v", res)
	}
	if !StatusCanceled.Valid() || StatusCanceled.LimitHit() || !strings.Contains(fmt.Sprint(Statuses), "canceled") {
		t.Errorf("canceled is not a valid status that is no limit")
	}
}
