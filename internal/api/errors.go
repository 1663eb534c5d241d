package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/sandboxd/sandboxd/internal/admission"
	"github.com/sandboxd/sandboxd/internal/executor"
	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/runtimes"
	"github.com/sandboxd/sandboxd/internal/session"
	"github.com/sandboxd/sandboxd/internal/workspace"
)

// Error classes of the API: a closed set, mapped onto HTTP statuses in one
// place (httpStatus).
var (
	ErrInvalidArgument = errors.New("invalid argument")
	ErrUnauthorized    = errors.New("unauthorized")
	ErrNotFound        = errors.New("not found")
	ErrTooLarge        = errors.New("request too large")
	ErrBusy            = errors.New("too many requests")
	ErrUnavailable     = errors.New("unavailable")
	ErrInternal        = errors.New("internal error")
	ErrMethod          = errors.New("method not allowed")
	// ErrConflict: the target's state forbids the request (a dead
	// session, a directory that still has entries).
	ErrConflict = errors.New("conflict")
	// ErrInsufficientStorage: a session's workspace is full.
	ErrInsufficientStorage = errors.New("insufficient storage")
)

// codes are the machine-readable names of the classes in error bodies.
var codes = map[error]string{
	ErrInvalidArgument:     "invalid_argument",
	ErrUnauthorized:        "unauthorized",
	ErrNotFound:            "not_found",
	ErrTooLarge:            "payload_too_large",
	ErrBusy:                "too_many_requests",
	ErrUnavailable:         "unavailable",
	ErrInternal:            "internal",
	ErrMethod:              "method_not_allowed",
	ErrConflict:            "conflict",
	ErrInsufficientStorage: "insufficient_storage",
}

// classOf maps an error from anywhere below onto one class.
func classOf(err error) error {
	var maxErr *http.MaxBytesError
	switch {
	case errors.As(err, &maxErr), errors.Is(err, workspace.ErrFileTooLarge):
		return ErrTooLarge
	case errors.Is(err, admission.ErrQueueFull), errors.Is(err, session.ErrTooMany):
		return ErrBusy
	case errors.Is(err, executor.ErrInvalid), errors.Is(err, limits.ErrInvalid), errors.Is(err, runtimes.ErrUnknownRuntime),
		errors.Is(err, session.ErrInvalid), errors.Is(err, workspace.ErrBadFileName), errors.Is(err, workspace.ErrNotRegular):
		return ErrInvalidArgument
	case errors.Is(err, session.ErrNotFound), errors.Is(err, workspace.ErrFileNotFound):
		return ErrNotFound
	case errors.Is(err, session.ErrDead), errors.Is(err, workspace.ErrDirNotEmpty):
		return ErrConflict
	case errors.Is(err, workspace.ErrFull):
		return ErrInsufficientStorage
	case errors.Is(err, executor.ErrUnavailable), errors.Is(err, session.ErrUnavailable),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return ErrUnavailable
	}
	for _, c := range []error{ErrInvalidArgument, ErrUnauthorized, ErrNotFound, ErrTooLarge, ErrBusy, ErrUnavailable, ErrMethod, ErrConflict, ErrInsufficientStorage} {
		if errors.Is(err, c) {
			return c
		}
	}
	return ErrInternal
}

// httpStatus is the one mapping of error classes to HTTP statuses.
func httpStatus(class error) int {
	switch class {
	case ErrInvalidArgument:
		return http.StatusBadRequest
	case ErrUnauthorized:
		return http.StatusUnauthorized
	case ErrNotFound:
		return http.StatusNotFound
	case ErrMethod:
		return http.StatusMethodNotAllowed
	case ErrTooLarge:
		return http.StatusRequestEntityTooLarge
	case ErrBusy:
		return http.StatusTooManyRequests
	case ErrUnavailable:
		return http.StatusServiceUnavailable
	case ErrConflict:
		return http.StatusConflict
	case ErrInsufficientStorage:
		return http.StatusInsufficientStorage
	}
	return http.StatusInternalServerError
}

func errorBody(err error) (int, ErrorBody) {
	class := classOf(err)
	return httpStatus(class), ErrorBody{Error: ErrorDetail{Code: codes[class], Message: err.Error()}}
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

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
