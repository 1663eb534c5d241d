package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
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
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var req RunRequest
	if err := dec.Decode(&req); err != nil {
		var maxErr *http.MaxBytesError
		if errors.As(err, &maxErr) {
			return nil, fmt.Errorf("%w: the request body is larger than %d bytes", ErrTooLarge, maxErr.Limit)
		}
		return nil, fmt.Errorf("%w: request body: %w", ErrInvalidArgument, err)
	}
	// Anything after the one JSON value (another value, or a stray ']'
	// that More does not report) is an error, not ignored.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: request body: data after the JSON object", ErrInvalidArgument)
	}
	return &req, nil
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

// eventWriter writes events from the run's two output goroutines, one
// whole line at a time, flushed. The first event sends the 200 and the
// headers; everything happens under mu, since both streams may be first.
type eventWriter struct {
	mu      sync.Mutex
	w       http.ResponseWriter
	rc      *http.ResponseController
	enc     *json.Encoder
	err     error
	started bool
}

func (e *eventWriter) emit(ev Event) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.started {
		e.started = true
		e.w.Header().Set("Content-Type", ndjson)
		e.w.Header().Set("X-Content-Type-Options", "nosniff")
		e.w.WriteHeader(http.StatusOK)
	}
	if e.err != nil {
		return e.err
	}
	if e.err = e.enc.Encode(ev); e.err == nil {
		e.err = e.rc.Flush()
	}
	return e.err
}

func (e *eventWriter) isStarted() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.started
}

type streamOf struct {
	e    *eventWriter
	name string
}

func (s streamOf) Write(p []byte) (int, error) {
	ev := Event{Type: s.name}
	ev.Data, ev.Encoding = run.EncodeBytes(p)
	// A client that went away is noticed through the request's context,
	// which cancels the run; the output keeps draining into the result.
	_ = s.e.emit(ev)
	return len(p), nil
}

// streamRun answers with NDJSON: 200 and the header with the first event
// (a full queue is still a plain 429), then chunks, then the result.
func (s *Server) streamRun(w http.ResponseWriter, r *http.Request, spec *run.Spec) {
	ew := &eventWriter{w: w, rc: http.NewResponseController(w), enc: json.NewEncoder(w)}
	stream := executor.Stream{Stdout: streamOf{ew, "stdout"}, Stderr: streamOf{ew, "stderr"}}
	res, err := s.execute(r, spec, stream)
	if res == nil {
		if !ew.isStarted() {
			s.reject(w, err)
			return
		}
		_, body := errorBody(err)
		_ = ew.emit(Event{Type: "error", Error: &body.Error})
		return
	}
	_ = ew.emit(Event{Type: "result", Result: res})
}
