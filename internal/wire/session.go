package wire

import (
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/workspace"
)

// FileList is the body of GET /v1/sessions/{id}/files.
type FileList struct {
	Files     []workspace.FileInfo `json:"files"`
	Truncated bool                 `json:"truncated,omitempty"`
}

// SessionList is the body of GET /v1/sessions.
type SessionList struct {
	Sessions []run.SessionInfo `json:"sessions"`
}

// CellEvent is one line of a streamed cell (NDJSON): output chunks and
// displays as they happen, then the cell's result (or an error) last.
type CellEvent struct {
	Type     string          `json:"type"` // "stdout", "stderr", "display", "result", "error"
	Data     string          `json:"data,omitempty"`
	Encoding string          `json:"encoding,omitempty"`
	Display  run.MIMEBundle  `json:"display,omitempty"`
	Result   *run.CellResult `json:"result,omitempty"`
	Error    *ErrorDetail    `json:"error,omitempty"`
}

// InterruptResult is the body of POST /v1/sessions/{id}/interrupt.
type InterruptResult struct {
	// Interrupted says a cell was running and was sent the interrupt.
	Interrupted bool `json:"interrupted"`
}
