package api

import (
	"errors"
	"io"
	"net/http"
	"sync"

	"github.com/sandboxd/sandboxd/internal/jsonstream"
	"github.com/sandboxd/sandboxd/internal/run"
)

// errStreamClosed: an event came after its stream's handler was done.
var errStreamClosed = errors.New("the stream is closed")

// events builds the lines of one kind of NDJSON stream (a run's: Event; a
// cell's: CellEvent). Both kinds have output chunks and a last error line.
type events struct {
	// chunk is an output event: typ is "stdout" or "stderr", data and
	// encoding as run.EncodeBytes gives them.
	chunk func(typ, data, encoding string) any
	// fail is the error event that ends a stream whose work failed.
	fail func(*ErrorDetail) any
}

// eventWriter writes NDJSON events from several goroutines (a run's two
// output drains, a cell's drains and its display callback), one whole line
// at a time, flushed. The first event sends the 200 and the headers;
// everything happens under mu, since any of them may be first. After
// close, events are dropped: a writer that a drain still holds must not
// touch a ResponseWriter whose handler has returned.
type eventWriter struct {
	kind events

	mu      sync.Mutex
	w       http.ResponseWriter
	rc      *http.ResponseController
	err     error
	started bool
}

func newEventWriter(w http.ResponseWriter, kind events) *eventWriter {
	return &eventWriter{kind: kind, w: w, rc: http.NewResponseController(w)}
}

func (e *eventWriter) emit(ev any) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.err != nil {
		return e.err
	}
	if !e.started {
		e.started = true
		e.w.Header().Set("Content-Type", ndjson)
		e.w.Header().Set("X-Content-Type-Options", "nosniff")
		e.w.WriteHeader(http.StatusOK)
	}
	// The last event holds the whole result: it is streamed as it is
	// encoded (writeJSON).
	if e.err = jsonstream.Encode(e.w, ev); e.err == nil {
		e.err = e.rc.Flush()
	}
	return e.err
}

// close ends the stream: it waits for an event being written and drops
// every later one. The handler calls it before it returns.
func (e *eventWriter) close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.err == nil {
		e.err = errStreamClosed
	}
}

// output is an io.Writer that sends each write as one chunk event of typ.
func (e *eventWriter) output(typ string) io.Writer { return chunkWriter{e, typ} }

// finish ends a stream with its last event: last (the result), or, when
// the work failed (last is nil), err. An error before anything was sent is
// a plain error answer, given by plain (a full queue is still a 429); after,
// it is an error event.
func (e *eventWriter) finish(last any, err error, plain func(error)) {
	if last == nil {
		e.mu.Lock()
		if !e.started {
			// Nothing was sent: the answer is plain, and no late event
			// may write after it.
			e.started, e.err = true, errStreamClosed
			e.mu.Unlock()
			plain(err)
			return
		}
		e.mu.Unlock()
		_, body := errorBody(err)
		last = e.kind.fail(&body.Error)
	}
	_ = e.emit(last)
	e.close()
}

type chunkWriter struct {
	e   *eventWriter
	typ string
}

func (c chunkWriter) Write(p []byte) (int, error) {
	data, enc := run.EncodeBytes(p)
	// A client that went away is noticed through the request's context,
	// which cancels the work; the output keeps draining into the result.
	_ = c.e.emit(c.e.kind.chunk(c.typ, data, enc))
	return len(p), nil
}
