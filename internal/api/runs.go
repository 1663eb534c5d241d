package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/sandboxd/sandboxd/internal/executor"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/runtimes"
	"github.com/sandboxd/sandboxd/internal/wire"
)

const ndjson = wire.NDJSON

// The API's JSON shapes live in package wire, shared with clients.
type (
	RunRequest  = wire.RunRequest
	Event       = wire.Event
	ErrorBody   = wire.ErrorBody
	ErrorDetail = wire.ErrorDetail
)

// DecodeRunRequest reads a RunRequest strictly: unknown fields, trailing
// data and a body of the wrong shape are errors that say what is wrong.
func DecodeRunRequest(r io.Reader) (*RunRequest, error) {
	var req RunRequest
	if err := decodeStrict(r, &req); err != nil {
		return nil, err
	}
	return &req, nil
}

// decodeStrict reads one JSON object into v: unknown fields, trailing data
// and a body of the wrong shape are ErrInvalidArgument, a body past the
// limit ErrTooLarge, each saying what is wrong. A typo in a limit's name
// is an error, not a silently ignored limit.
func decodeStrict(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var maxErr *http.MaxBytesError
		if errors.As(err, &maxErr) {
			return fmt.Errorf("%w: the request body is larger than %d bytes", ErrTooLarge, maxErr.Limit)
		}
		return fmt.Errorf("%w: request body: %w", ErrInvalidArgument, err)
	}
	// Anything after the one JSON value (another value, or a stray ']'
	// that More does not report) is an error, not ignored.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: request body: data after the JSON object", ErrInvalidArgument)
	}
	return nil
}

// SpecOf turns the request into a run spec, resolving the short form, and
// checks it.
func SpecOf(req *RunRequest, x Executor) (*run.Spec, error) {
	spec := &run.Spec{
		Runtime: req.Runtime, Files: req.Files, Entry: req.Entrypoint, Args: req.Args,
		Env: req.Env, Limits: req.Limits, CompileLimits: req.CompileLimits, Backend: req.Backend,
	}
	if req.Stdin != "" {
		spec.Stdin = []byte(req.Stdin)
	}
	if req.Code != nil {
		if len(req.Files) > 0 {
			return nil, fmt.Errorf("%w: give either code or files, not both", ErrInvalidArgument)
		}
		if req.Runtime == "" {
			return nil, fmt.Errorf("%w: code needs a runtime (see GET /v1/runtimes)", ErrInvalidArgument)
		}
		rt, err := x.Runtimes().Lookup(req.Runtime)
		if err != nil {
			return nil, err
		}
		name := "main"
		if len(rt.Extensions) > 0 {
			name += rt.Extensions[0]
		}
		spec.Files = []run.File{{Name: name, Content: []byte(*req.Code)}}
	}
	if err := x.Check(spec); err != nil {
		return nil, err
	}
	return spec, nil
}

func (s *Server) handleRun(w http.ResponseWriter, r *http.Request) {
	req, err := DecodeRunRequest(r.Body)
	if err != nil {
		s.reject(w, err)
		return
	}
	spec, err := SpecOf(req, s.exec)
	if err != nil {
		s.reject(w, err)
		return
	}
	if wantsStream(r) {
		s.streamRun(w, r, spec)
		return
	}
	res, err := s.execute(r, spec, executor.Stream{})
	if res == nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// reject answers a request refused before it ran.
func (s *Server) reject(w http.ResponseWriter, err error) {
	reason := "invalid"
	switch classOf(err) {
	case ErrTooLarge:
		reason = "too_large"
	case ErrBusy:
		reason = "queue_full"
	}
	s.metrics.rejected.WithLabelValues(reason).Inc()
	writeError(w, err)
}

// execute admits and runs spec for a request.
func (s *Server) execute(r *http.Request, spec *run.Spec, stream executor.Stream) (*run.Result, error) {
	return s.Run(r.Context(), spec, stream)
}

// Run admits spec through the gate, runs it, and logs and counts the
// result: the path every front end of the daemon (HTTP, Piston, MCP) takes.
// A nil result means the run never started (err says why). With Check and
// Runtimes, it makes the Server an Executor for those front ends.
func (s *Server) Run(ctx context.Context, spec *run.Spec, stream executor.Stream) (*run.Result, error) {
	queued := s.cfg.Now()
	release, err := s.gate.Acquire(ctx)
	if err != nil {
		if classOf(err) == ErrBusy {
			s.metrics.rejected.WithLabelValues("queue_full").Inc()
		}
		return nil, err
	}
	defer release()
	start := s.cfg.Now()
	res, err := s.exec.Run(ctx, spec, stream)
	if res == nil {
		return nil, err
	}
	took := s.cfg.Now().Sub(start)
	s.metrics.runs.WithLabelValues(string(res.Status), res.Runtime).Inc()
	s.metrics.duration.WithLabelValues(res.Runtime).Observe(took.Seconds())
	level := slog.LevelInfo
	if res.Status == run.StatusInternalError && ctx.Err() == nil {
		// A run its client gave up on is not the sandbox's failure.
		level = slog.LevelError
	}
	s.log.Log(ctx, level, "run", "id", res.ID, "runtime", res.Runtime, "status", res.Status,
		"exit_code", res.ExitCode, "wall", res.WallTime.Round(time.Microsecond), "cpu", res.CPUTime.Round(time.Microsecond),
		"peak_memory", res.PeakMemory, "queued", start.Sub(queued).Round(time.Microsecond), "took", took.Round(time.Microsecond),
		"error", res.Error)
	return res, nil
}

// Check checks a spec without running it.
func (s *Server) Check(spec *run.Spec) error { return s.exec.Check(spec) }

// Runtimes is the executor's registry.
func (s *Server) Runtimes() *runtimes.Registry { return s.exec.Runtimes() }

// runEvents are the lines of a streamed run.
var runEvents = events{
	chunk: func(typ, data, encoding string) any { return Event{Type: typ, Data: data, Encoding: encoding} },
	fail:  func(d *ErrorDetail) any { return Event{Type: "error", Error: d} },
}

// streamRun answers with NDJSON: 200 and the header with the first event
// (a full queue is still a plain 429), then chunks, then the result.
func (s *Server) streamRun(w http.ResponseWriter, r *http.Request, spec *run.Spec) {
	ew := newEventWriter(w, runEvents)
	res, err := s.execute(r, spec, executor.Stream{Stdout: ew.output("stdout"), Stderr: ew.output("stderr")})
	var last any
	if res != nil {
		last = Event{Type: "result", Result: res}
	}
	ew.finish(last, err, func(err error) { s.reject(w, err) })
}
