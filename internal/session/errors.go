package session

import "github.com/sandboxd/sandboxd/internal/errdefs"

var (
	// ErrInvalid: a session spec or a cell request is wrong; the message
	// says what.
	ErrInvalid = errdefs.New(errdefs.ErrInvalidArgument, "invalid session request")
	// ErrNotFound: no such session here, or not the caller's. The message
	// names the replica that holds it when the id says so.
	ErrNotFound = errdefs.New(errdefs.ErrNotFound, "session not found")
	// ErrCellQueueFull: a session has a running cell and as many waiting
	// cells, or as much waiting code, as it may hold. Retry when one ends.
	ErrCellQueueFull = errdefs.New(errdefs.ErrExhausted, "too many cells waiting")
	// ErrTooMany: the daemon's or the caller's session quota is used up.
	ErrTooMany = errdefs.New(errdefs.ErrExhausted, "too many sessions")
	// ErrDead: the session's kernel is gone (killed at a limit, or ended),
	// and its workspace files with it; the message says why it died.
	ErrDead = errdefs.New(errdefs.ErrConflict, "session is dead")
	// ErrUnavailable: sessions cannot run on this host.
	ErrUnavailable = errdefs.New(errdefs.ErrUnavailable, "sessions unavailable")
	// ErrDraining: this replica is being removed (Manager.Drain) and
	// takes no new session; another replica will.
	ErrDraining = errdefs.New(errdefs.ErrUnavailable, "replica draining")
)
