package run

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/spool"
)

// Stream carries a run's live I/O. Every field may be nil.
type Stream struct {
	// Stdin is copied to the program's stdin (when Spec.Stdin is set too,
	// Stdin wins).
	Stdin io.Reader
	// Stdout and Stderr receive the program's output as it arrives.
	Stdout, Stderr io.Writer
	// Spool, when set, is where an output past output.SpoolAt bytes
	// waits: the Result then holds it in StdoutFile or StderrFile, not on
	// the heap, and its holder must Close the Result. For a caller that
	// streams the answer to a client who may be slow (the HTTP API); nil
	// keeps the output in Stdout and Stderr, as every other caller wants.
	Spool *spool.Dir
}

// Plan is a checked Spec, ready to run: its runtime resolved, its backend
// picked, its limits merged with the defaults and validated against the
// ceilings. A spec is planned once, by a Runner's Plan, and the plan
// travels through the decorators (admission, metrics, the run log) to the
// Run of the Runner that made it.
type Plan struct {
	// Spec is the spec as given.
	Spec *Spec
	// Runtime is the canonical runtime name, or "" for a WebAssembly
	// module run as is.
	Runtime string
	// Backend is the backend that will run it (never BackendAuto).
	Backend Backend
	// Limits are the run's complete limits.
	Limits limits.Limits
	// Waited is how long the run waited for a slot: set by admission,
	// read by the run log.
	Waited time.Duration
	// Detail is the planner's own data, for its Run alone.
	Detail any
}

// Runner plans and runs specs. The executor implements it over both
// backends; admission, metrics and the run log wrap it (each a Runner
// that calls the next), and every front end (CLI, HTTP, Piston, MCP)
// takes one.
type Runner interface {
	// Plan checks spec and resolves what it leaves open. Its errors say
	// what is wrong and carry an errdefs class (invalid argument for a
	// bad spec, unavailable for what this host cannot run).
	Plan(spec *Spec) (*Plan, error)
	// Run runs a plan made by this Runner's Plan. A nil result means the
	// run never started (err says why); otherwise err is set too when the
	// sandbox itself failed (Status internal_error). A run whose ctx ends
	// before its result is in, in whatever phase (waiting for a slot,
	// placing its files, building its sandbox, running), has a result
	// and no error: Status canceled, or timeout for a passed deadline
	// (see SetCanceled).
	Run(ctx context.Context, p *Plan, s Stream) (*Result, error)
}

// InternalError is the result of a run the sandbox failed before or while
// running it. Its Error and Reason are clipped at MaxMessage: the error
// can carry what the sandbox said (init's setup error, a worker's).
func InternalError(err error) *Result {
	msg := Clip(err.Error(), MaxMessage)
	return &Result{Status: StatusInternalError, ExitCode: -1, Error: msg, Reason: "the sandbox failed: " + msg, Stdout: []byte{}, Stderr: []byte{}}
}

// SetCanceled marks res as stopped by its caller, for the cause its
// context gave (context.Cause): a passed deadline is a timeout, anything
// else canceled. A cause of the canceler's own (context.WithCancelCause:
// the daemon's shutdown) is the reason; a plain cancel is the caller's
// going. Either way it is not an internal error: Error is cleared.
func (r *Result) SetCanceled(cause error) {
	r.Error = ""
	if errors.Is(cause, context.DeadlineExceeded) {
		r.Status = StatusTimeout
		r.Reason = "stopped: the caller's deadline passed"
		return
	}
	r.Status = StatusCanceled
	r.Reason = "stopped: the run was canceled by its caller"
	if cause != nil && !errors.Is(cause, context.Canceled) {
		r.Reason = "stopped: " + Clip(cause.Error(), MaxMessage)
	}
}

// Canceled is the result of a run whose caller went away before its
// program started, while it was doing what (waiting for a slot, placing
// its files): as SetCanceled says, with the phase in its reason.
func Canceled(cause error, while string) *Result {
	r := &Result{ExitCode: -1, Stdout: []byte{}, Stderr: []byte{}}
	r.SetCanceled(cause)
	r.Reason += " while " + while
	return r
}

// Do plans spec on r and runs it: for callers that have nothing to do
// between the two.
func Do(ctx context.Context, r Runner, spec *Spec, s Stream) (*Result, error) {
	p, err := r.Plan(spec)
	if err != nil {
		return nil, err
	}
	return r.Run(ctx, p, s)
}
