package session

import "errors"

var (
	// ErrInvalid: a session spec or a cell request is wrong; the message
	// says what.
	ErrInvalid = errors.New("invalid session request")
	// ErrNotFound: no such session here, or not the caller's. The message
	// names the replica that holds it when the id says so.
	ErrNotFound = errors.New("session not found")
	// ErrTooMany: the daemon's or the caller's session quota is used up.
	ErrTooMany = errors.New("too many sessions")
	// ErrDead: the session's kernel is gone (killed at a limit, or ended);
	// its files can still be read until it is deleted or expires.
	ErrDead = errors.New("session is dead")
	// ErrUnavailable: sessions cannot run on this host.
	ErrUnavailable = errors.New("sessions unavailable")
)
