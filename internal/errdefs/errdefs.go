// Package errdefs is the closed set of error classes every package's errors
// belong to, and the one mapping of a class onto an HTTP status, so front
// ends map classes, never lists of sentinels (containerd's errdefs is the
// model).
//
// A package declares its sentinels with New, naming their class:
//
//	var ErrNotFound = errdefs.New(errdefs.ErrNotFound, "session not found")
//
// and errors.Is(err, errdefs.ErrNotFound) then holds for every error that
// wraps it. A leaf package that imports nothing internal (internal/limits)
// marks its error types with a method instead, as containerd's errdefs
// allows: InvalidArgument(), NotFound(), ... (see the marker interfaces).
package errdefs

import (
	"context"
	"errors"
)

// Class is one error class. Compare classes with ==; test an error's class
// with errors.Is(err, class) or ClassOf.
type Class struct {
	msg  string
	code string
}

// Error is the class's name, as a message.
func (c *Class) Error() string { return c.msg }

// Code is the class's machine-readable name in error bodies
// ("invalid_argument").
func (c *Class) Code() string { return c.code }

// The classes. Every error a front end can see belongs to exactly one.
var (
	// ErrInvalidArgument: the request is wrong (a bad limit, an unknown
	// runtime, a hostile file name); the message says what.
	ErrInvalidArgument = &Class{"invalid argument", "invalid_argument"}
	// ErrUnauthorized: no or a wrong credential.
	ErrUnauthorized = &Class{"unauthorized", "unauthorized"}
	// ErrForbidden: the request is refused whoever sends it: a web
	// page's cross-origin request, a Host a token-less daemon does not
	// serve (DNS rebinding).
	ErrForbidden = &Class{"forbidden", "forbidden"}
	// ErrNotFound: the named thing (a session, a file) does not exist.
	ErrNotFound = &Class{"not found", "not_found"}
	// ErrConflict: the target's state forbids the request (a dead
	// session, a directory that still has entries).
	ErrConflict = &Class{"conflict", "conflict"}
	// ErrTooLarge: a body or file is longer than its cap.
	ErrTooLarge = &Class{"too large", "payload_too_large"}
	// ErrExhausted: a quota or a queue is full; retrying later may work.
	ErrExhausted = &Class{"resource exhausted", "too_many_requests"}
	// ErrNoSpace: a workspace is full.
	ErrNoSpace = &Class{"insufficient storage", "insufficient_storage"}
	// ErrMethod: the endpoint does not take this method.
	ErrMethod = &Class{"method not allowed", "method_not_allowed"}
	// ErrUnsupportedMediaType: the endpoint does not take a body of this
	// Content-Type (text/plain on a JSON endpoint: a web form's).
	ErrUnsupportedMediaType = &Class{"unsupported media type", "unsupported_media_type"}
	// ErrUnavailable: the request is fine but cannot be served here or
	// now (a backend this host lacks, a daemon shutting down).
	ErrUnavailable = &Class{"unavailable", "unavailable"}
	// ErrInternal: anything else; a bug or a broken host.
	ErrInternal = &Class{"internal error", "internal"}
)

// Classes lists every class in the order ClassOf tries them, which
// decides for an error that wraps two: a file too large for a request is
// too large before it is invalid, and a full queue is a full queue.
var Classes = []*Class{
	ErrTooLarge, ErrExhausted, ErrInvalidArgument, ErrNotFound, ErrConflict,
	ErrNoSpace, ErrUnavailable, ErrUnauthorized, ErrForbidden, ErrMethod,
	ErrUnsupportedMediaType, ErrInternal,
}

// New returns a sentinel error of class c with the message msg:
// errors.Is(New(c, msg), c) holds, and so for every error wrapping it.
func New(c *Class, msg string) error { return &classed{msg: msg, class: c} }

type classed struct {
	msg   string
	class *Class
}

func (e *classed) Error() string        { return e.msg }
func (e *classed) Is(target error) bool { return target == e.class }

// Wrap returns err with class c, unless err already has a class: the first
// class given to an error is the one it keeps.
func Wrap(c *Class, err error) error {
	if err == nil || ClassOf(err) != ErrInternal || errors.Is(err, ErrInternal) {
		return err
	}
	return &wrapped{err: err, class: c}
}

type wrapped struct {
	err   error
	class *Class
}

func (e *wrapped) Error() string        { return e.err.Error() }
func (e *wrapped) Unwrap() error        { return e.err }
func (e *wrapped) Is(target error) bool { return target == e.class }

// The marker interfaces a package that cannot import errdefs implements on
// its error types to name their class.
type (
	invalidArgument interface{ InvalidArgument() }
	notFound        interface{ NotFound() }
)

// ClassOf is err's class: the first of Classes it matches, a marker, or
// ErrUnavailable for a cancelled or timed-out context (the request went
// away or the server is stopping); ErrInternal for anything else.
func ClassOf(err error) *Class {
	for _, c := range Classes[:len(Classes)-1] {
		if errors.Is(err, c) {
			return c
		}
	}
	var ia invalidArgument
	var nf notFound
	switch {
	case errors.As(err, &ia):
		return ErrInvalidArgument
	case errors.As(err, &nf):
		return ErrNotFound
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return ErrUnavailable
	}
	return ErrInternal
}

// Is reports whether err is of class c.
func Is(err error, c *Class) bool { return ClassOf(err) == c }
