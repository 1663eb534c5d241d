package run

import (
	"encoding/json"
	"io"
	"maps"
	"slices"
	"time"

	"github.com/sandboxd/sandboxd/internal/jsonstream"
	"github.com/sandboxd/sandboxd/internal/limits"
)

// A session is a run's sandbox that stays, holding a kernel that runs
// cells one after another: the session half of the contract. Its types
// are here, beside the run's, so the session engine, the front ends and
// the clients share one vocabulary.

// MIMEBundle is one value in several representations, by MIME type, as
// Jupyter's display data: "text/plain" always, "image/png" (base64),
// "text/html", "text/markdown" when the object offers them.
type MIMEBundle map[string]string

// CellError is an exception a cell raised.
type CellError struct {
	Name      string `json:"name"`
	Value     string `json:"value"`
	Traceback string `json:"traceback"`
}

// SessionState is a session's state.
type SessionState string

const (
	// SessionIdle: ready for a cell.
	SessionIdle SessionState = "idle"
	// SessionBusy: running a cell.
	SessionBusy SessionState = "busy"
	// SessionDead: the kernel is gone; Info.Reason says why.
	SessionDead SessionState = "dead"
)

// CellResult is what one cell did. Its JSON form writes output as text
// (base64 with an "..._encoding" field when not UTF-8) and times in ms,
// as a run's result does.
type CellResult struct {
	// Session and Cell (the session's execution count) identify the cell.
	Session string
	Cell    int
	// Status is ok, error (an exception: see Error), or the limit that
	// stopped the cell: timeout, cpu_limit, output_limit, memory_limit; or
	// exited, signaled or internal_error when the kernel itself ended.
	Status Status
	// Reason is one sentence behind a Status other than ok and error.
	Reason string
	Stdout []byte
	Stderr []byte
	// StdoutTruncated and StderrTruncated say a stream passed the cell's
	// output cap (the cell was then interrupted: output_limit).
	StdoutTruncated, StderrTruncated bool
	// Result is the value of the cell's trailing expression, if any.
	Result MIMEBundle
	// Error is the exception the cell raised (Status error or timeout).
	Error *CellError
	// Display is what the cell displayed, in order: figures, display().
	Display []MIMEBundle
	// WallTime and CPUTime are the cell's; CPU time counts every process
	// of the session.
	WallTime, CPUTime time.Duration
	// State is the session's state after the cell: idle, or dead.
	State SessionState
}

type cellResultJSON struct {
	Session string `json:"session_id"`
	Cell    int    `json:"cell"`
	Status  Status `json:"status"`
	Reason  string `json:"reason,omitempty"`
	outputJSON
	StdoutTruncated bool         `json:"stdout_truncated,omitempty"`
	StderrTruncated bool         `json:"stderr_truncated,omitempty"`
	Result          MIMEBundle   `json:"result,omitempty"`
	Error           *CellError   `json:"error,omitempty"`
	Display         []MIMEBundle `json:"display,omitempty"`
	WallTimeMS      float64      `json:"wall_time_ms"`
	CPUTimeMS       float64      `json:"cpu_time_ms"`
	State           SessionState `json:"state"`
}

// MarshalJSON writes the cell result's wire form (EncodeJSON's bytes).
func (c CellResult) MarshalJSON() ([]byte, error) { return jsonstream.Marshal(&c) }

// EncodeJSON writes cellResultJSON's fields in order, streaming the
// output, the displays and the error: a cell's result is never held
// encoded.
func (c *CellResult) EncodeJSON(w *jsonstream.Writer) {
	w.BeginObject()
	w.Key("session_id")
	w.String(c.Session)
	w.Key("cell")
	w.Value(c.Cell)
	w.Key("status")
	w.String(string(c.Status))
	stringField(w, "reason", c.Reason)
	encodeOutput(w, c.Stdout, c.Stderr)
	boolField(w, "stdout_truncated", c.StdoutTruncated)
	boolField(w, "stderr_truncated", c.StderrTruncated)
	if len(c.Result) > 0 {
		w.Key("result")
		c.Result.EncodeJSON(w)
	}
	if c.Error != nil {
		w.Key("error")
		c.Error.EncodeJSON(w)
	}
	if len(c.Display) > 0 {
		w.Key("display")
		w.BeginArray()
		for _, b := range c.Display {
			b.EncodeJSON(w)
		}
		w.EndArray()
	}
	w.Key("wall_time_ms")
	w.Value(ms(c.WallTime))
	w.Key("cpu_time_ms")
	w.Value(ms(c.CPUTime))
	w.Key("state")
	w.String(string(c.State))
	w.EndObject()
}

// EncodeJSON writes the bundle as json.Marshal writes a map (keys
// sorted; nil is null), streaming the values: an image is megabytes.
func (b MIMEBundle) EncodeJSON(w *jsonstream.Writer) {
	if b == nil {
		w.Value(nil)
		return
	}
	w.BeginObject()
	for _, k := range slices.Sorted(maps.Keys(b)) {
		w.Key(k)
		w.String(b[k])
	}
	w.EndObject()
}

// EncodeJSON writes the exception, streaming its traceback.
func (e *CellError) EncodeJSON(w *jsonstream.Writer) {
	w.BeginObject()
	w.Key("name")
	w.String(e.Name)
	w.Key("value")
	w.String(e.Value)
	w.Key("traceback")
	w.String(e.Traceback)
	w.EndObject()
}

// UnmarshalJSON reads the wire form (the CLI against a daemon does).
func (c *CellResult) UnmarshalJSON(b []byte) error {
	var j cellResultJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	stdout, stderr, err := j.outputJSON.bytes()
	if err != nil {
		return err
	}
	*c = CellResult{
		Session: j.Session, Cell: j.Cell, Status: j.Status, Reason: j.Reason,
		Stdout: stdout, Stderr: stderr, StdoutTruncated: j.StdoutTruncated, StderrTruncated: j.StderrTruncated,
		Result: j.Result, Error: j.Error, Display: j.Display,
		WallTime: time.Duration(j.WallTimeMS * float64(time.Millisecond)),
		CPUTime:  time.Duration(j.CPUTimeMS * float64(time.Millisecond)),
		State:    j.State,
	}
	return nil
}

// SessionInfo describes a session (GET /v1/sessions).
type SessionInfo struct {
	ID      string       `json:"id"`
	Runtime string       `json:"runtime"`
	Version string       `json:"version"`
	State   SessionState `json:"state"`
	// Reason says why a dead session died.
	Reason      string          `json:"reason,omitempty"`
	Cells       int             `json:"cells"`
	Created     time.Time       `json:"created_at"`
	LastUsed    time.Time       `json:"last_used_at"`
	ExpiresAt   time.Time       `json:"expires_at"`
	IdleTimeout limits.Duration `json:"idle_timeout"`
	// CPUBudget is the CPU time the session may use in its whole life;
	// CPUUsed what it has used so far (to the millisecond). Both count
	// every process of the session, between cells too.
	CPUBudget limits.Duration `json:"cpu_budget"`
	CPUUsed   limits.Duration `json:"cpu_used"`
	Limits    limits.Limits   `json:"limits"`
}

// SessionSpec is what a client asks of a new session.
type SessionSpec struct {
	Runtime string `json:"runtime"`
	// Limits of the session; Timeout, CPUTime and Output are per cell.
	Limits limits.Limits `json:"limits"`
	// IdleTimeout: the session expires after this long without use.
	IdleTimeout limits.Duration `json:"idle_timeout,omitempty"`
	// CPUBudget is the CPU time the session may use in its whole life,
	// every process of it counted, between cells too (a background
	// thread or process spends it as a cell does). Past it the kernel is
	// killed and the session is dead, its reason naming the budget.
	CPUBudget limits.Duration   `json:"cpu_budget,omitempty"`
	Env       map[string]string `json:"env,omitempty"`
	// Files are written to the workspace before the kernel starts.
	Files []File `json:"files,omitempty"`
}

// CellRequest is one cell.
type CellRequest struct {
	Code string `json:"code"`
	// Timeout is the cell's wall deadline (default: the session's
	// timeout limit).
	Timeout limits.Duration `json:"timeout,omitempty"`
}

// CellStream carries a cell's live output. Every field may be nil.
type CellStream struct {
	Stdout, Stderr io.Writer
	// Display receives each display (a figure, display(obj)) as it comes.
	Display func(MIMEBundle)
}
