package daemon

import (
	"net/http"
	"time"
)

// writeDeadlines gives every write of a response its own deadline, d from
// the moment it starts (a write of more than writeSlice bytes is made as
// several, each with its own), instead of http.Server.WriteTimeout's one
// deadline for the whole response: a run may last minutes and stream
// output all the while (or answer only at its end), and that must not be
// cut, but a client that stops reading must be. A write that cannot hand its bytes to
// the kernel within d fails; net/http then cancels the request's context,
// which kills the run, and closes the connection.
//
// The deadline is also set when the handler starts (so an "100 Continue"
// the server writes for it is bounded) and when it returns (so is the
// final flush of a buffered response). net/http clears it between
// requests.
func writeDeadlines(next http.Handler, d time.Duration) http.Handler {
	if d <= 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dw := &deadlineWriter{ResponseWriter: w, rc: http.NewResponseController(w), d: d}
		dw.extend()
		defer dw.extend()
		next.ServeHTTP(dw, r)
	})
}

// deadlineWriter sets the connection's write deadline before each write.
// It unwraps for http.ResponseController, so SetReadDeadline, Hijack and
// the like reach the connection.
type deadlineWriter struct {
	http.ResponseWriter
	rc *http.ResponseController
	d  time.Duration
}

// extend moves the write deadline to d from now. It fails only where the
// connection has no deadlines (HTTP/2 before Go 1.20; a test recorder),
// and then there is nothing to extend.
func (w *deadlineWriter) extend() { _ = w.rc.SetWriteDeadline(time.Now().Add(w.d)) }

func (w *deadlineWriter) WriteHeader(code int) {
	w.extend()
	w.ResponseWriter.WriteHeader(code)
}

// writeSlice is the most a write hands on under one deadline. A run's
// last event holds its whole output (megabytes): at one deadline for it
// all, a client reading steadily at 1 MB/s would be cut. So the rule a
// client must keep is: take writeSlice bytes per write timeout (64 KiB in
// 30s by default, about 2 KB/s).
const writeSlice = 64 << 10

func (w *deadlineWriter) Write(p []byte) (int, error) {
	n := 0
	for {
		w.extend()
		m, err := w.ResponseWriter.Write(p[:min(len(p), writeSlice)])
		n += m
		p = p[m:]
		if err != nil || len(p) == 0 {
			return n, err
		}
	}
}

// FlushError is what http.ResponseController.Flush calls.
func (w *deadlineWriter) FlushError() error {
	w.extend()
	return w.rc.Flush()
}

// Flush is for callers that type-assert http.Flusher.
func (w *deadlineWriter) Flush() { _ = w.FlushError() }

func (w *deadlineWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
