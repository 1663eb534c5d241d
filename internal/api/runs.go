package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"

	"github.com/sandboxd/sandboxd/internal/errdefs"
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

// decodeStrict reads one JSON object into v: unknown fields, trailing data
// and a body of the wrong shape are errdefs.ErrInvalidArgument, a body past the
// limit errdefs.ErrTooLarge, each saying what is wrong. A typo in a limit's name
// is an error, not a silently ignored limit.
func decodeStrict(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return bodyError(err)
	}
	// Anything after the one JSON value (another value, or a stray ']'
	// that More does not report) is an error, not ignored.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: request body: data after the JSON object", errdefs.ErrInvalidArgument)
	}
	return nil
}

// bodyError says why a request body could not be decoded: it is larger
// than the limit (413), it did not all come within the read timeout, or it
// is not what was asked for (400).
func bodyError(err error) error {
	var maxErr *http.MaxBytesError
	if errors.As(err, &maxErr) {
		return fmt.Errorf("%w: the request body is larger than %d bytes", errdefs.ErrTooLarge, maxErr.Limit)
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return fmt.Errorf("%w: the request body did not all arrive within the daemon's read timeout (sandboxd serve --read-timeout)", errdefs.ErrInvalidArgument)
	}
	// json's messages quote the input (an unknown field's name).
	return fmt.Errorf("%w: request body: %w", errdefs.ErrInvalidArgument, run.ClipError(err, run.MaxMessage))
}

// SpecOf turns the request into a run spec, resolving the short form in
// reg. The runner's Plan checks the rest.
func SpecOf(req *RunRequest, reg *runtimes.Registry) (*run.Spec, error) {
	spec := req.Spec
	if req.StdinEncoding != "" {
		b, err := run.DecodeBytes(string(req.Stdin), req.StdinEncoding)
		if err != nil {
			return nil, fmt.Errorf("%w: stdin: %w", errdefs.ErrInvalidArgument, err)
		}
		spec.Stdin = b
	}
	if req.Code != nil {
		if len(req.Files) > 0 {
			return nil, fmt.Errorf("%w: give either code or files, not both", errdefs.ErrInvalidArgument)
		}
		if req.Runtime == "" {
			return nil, fmt.Errorf("%w: code needs a runtime (see GET /v1/runtimes)", errdefs.ErrInvalidArgument)
		}
		rt, err := reg.Lookup(req.Runtime)
		if err != nil {
			return nil, err
		}
		name := "main"
		if len(rt.Extensions) > 0 {
			name += rt.Extensions[0]
		}
		spec.Files = []run.File{{Name: name, Content: []byte(*req.Code)}}
	}
	return &spec, nil
}

// planOf decodes nothing: it turns a request into a plan of the server's
// runner, the one check every run gets before admission.
func (s *Server) planOf(req *RunRequest) (*run.Plan, error) {
	spec, err := SpecOf(req, s.cfg.Runtimes)
	if err != nil {
		return nil, err
	}
	return s.runner.Plan(spec)
}

func (s *Server) handleRun(w http.ResponseWriter, r *http.Request) {
	req := new(RunRequest)
	if err := s.decodeRequest(r, req); err != nil {
		s.reject(w, err)
		return
	}
	p, err := s.planOf(req)
	if err != nil {
		s.reject(w, err)
		return
	}
	if wantsStream(r) {
		s.streamRun(w, r, p)
		return
	}
	res, err := s.runner.Run(r.Context(), p, run.Stream{Spool: s.cfg.Spool})
	if res == nil {
		writeError(w, err)
		return
	}
	defer res.Close()
	writeJSON(w, http.StatusOK, res)
	s.answered(resultBytes(res))
}

// answered tells Config.AnswerDone that an answer holding held bytes of
// output has been sent or cut.
func (s *Server) answered(held int64) {
	if s.cfg.AnswerDone != nil {
		s.cfg.AnswerDone(held)
	}
}

// resultBytes is the output and file contents res holds on the heap, its
// compile step's included (not what waits in spool files).
func resultBytes(res *run.Result) int64 {
	var n int64
	for ; res != nil; res = res.Compile {
		n += int64(len(res.Stdout) + len(res.Stderr))
		for _, f := range res.Files {
			n += int64(len(f.Content))
		}
	}
	return n
}

// reject answers a request refused before it ran.
func (s *Server) reject(w http.ResponseWriter, err error) {
	reason := "invalid"
	switch classOf(err) {
	case errdefs.ErrTooLarge:
		reason = "too_large"
	case errdefs.ErrExhausted:
		reason = "queue_full"
	}
	s.metrics.Rejected(reason)
	writeError(w, err)
}

// runEvents are the lines of a streamed run.
var runEvents = events{
	chunk: func(typ, data, encoding string) any { return Event{Type: typ, Data: data, Encoding: encoding} },
	fail:  func(d *ErrorDetail) any { return Event{Type: "error", Error: d} },
}

// streamRun answers with NDJSON: 200 and the header with the first event
// (a full queue is still a plain 429), then chunks, then the result.
func (s *Server) streamRun(w http.ResponseWriter, r *http.Request, p *run.Plan) {
	ew := newEventWriter(w, runEvents)
	res, err := s.runner.Run(r.Context(), p, run.Stream{Stdout: ew.output("stdout"), Stderr: ew.output("stderr"), Spool: s.cfg.Spool})
	defer res.Close()
	var last any
	if res != nil {
		last = Event{Type: "result", Result: res}
	}
	ew.finish(last, err, func(err error) { writeError(w, err) })
	s.answered(resultBytes(res))
}
