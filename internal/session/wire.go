package session

import "github.com/sandboxd/sandboxd/internal/wire"

// The shapes clients see are in package wire, so a client does not link
// the server; these are their names here.
type (
	Spec        = wire.SessionSpec
	ExecRequest = wire.ExecRequest
	CellResult  = wire.CellResult
	CellError   = wire.CellError
	MIMEBundle  = wire.MIMEBundle
	Info        = wire.SessionInfo
	State       = wire.State
)

const (
	StateIdle = wire.StateIdle
	StateBusy = wire.StateBusy
	StateDead = wire.StateDead
)
