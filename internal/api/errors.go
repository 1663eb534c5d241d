package api

import (
	"errors"
	"net/http"

	"github.com/sandboxd/sandboxd/internal/errdefs"
	"github.com/sandboxd/sandboxd/internal/jsonstream"
	"github.com/sandboxd/sandboxd/internal/session"
)

// classOf is err's class (internal/errdefs); a body cut by MaxBytesReader
// is too large.
func classOf(err error) *errdefs.Class {
	var maxErr *http.MaxBytesError
	if errors.As(err, &maxErr) {
		return errdefs.ErrTooLarge
	}
	return errdefs.ClassOf(err)
}

func errorBody(err error) (int, ErrorBody) {
	class := classOf(err)
	return errdefs.HTTPStatus(class), ErrorBody{Error: ErrorDetail{Code: class.Code(), Message: err.Error()}}
}

func writeError(w http.ResponseWriter, err error) {
	status, body := errorBody(err)
	switch {
	case errors.Is(err, session.ErrTooMany):
		// A session quota frees when a session is deleted or expires,
		// not after a wait: no Retry-After.
	case status == http.StatusTooManyRequests, status == http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", "1")
	case status == http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="sandboxd"`)
	}
	// A session of another replica: a router in front can send the
	// request there.
	var elsewhere *session.ElsewhereError
	if errors.As(err, &elsewhere) {
		w.Header().Set(ReplicaHeader, elsewhere.Replica)
	}
	writeJSON(w, status, body)
}

// writeJSON answers v as JSON, as json.Encoder writes it. A value with
// large fields (a result, a cell, a Piston response) is a
// jsonstream.Value and is streamed to the client as it is encoded: the
// daemon never holds its encoded form, which for output full of "<" is six
// times the output. A client that stops reading fails the write at its
// deadline (internal/daemon), and the rest is not encoded.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = jsonstream.Encode(w, v)
}
