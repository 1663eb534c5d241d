// Package wire holds the JSON shapes of sandboxd's HTTP API that both the
// daemon and its clients use, and nothing else, so a client does not pull
// in the server.
package wire

import (
	"github.com/sandboxd/sandboxd/internal/run"
)

// NDJSON is the media type of a streamed run.
const NDJSON = "application/x-ndjson"

// RunRequest is the body of POST /v1/runs: a run.Spec, or its short form,
// Code with Runtime and no Files.
type RunRequest struct {
	run.Spec
	// Code is the program's source in the short form.
	Code *string `json:"code,omitempty"`
	// StdinEncoding says how Spec's stdin is written: "" or "utf8" for
	// text, "base64" for bytes that are not UTF-8 (which a JSON string
	// cannot carry), as a file's content is.
	StdinEncoding string `json:"stdin_encoding,omitempty"`
}

// Event is one line of a streamed run (NDJSON): output chunks as they
// happen, then the result (or an error) last.
type Event struct {
	Type     string       `json:"type"` // "stdout", "stderr", "result", "error"
	Data     string       `json:"data,omitempty"`
	Encoding string       `json:"encoding,omitempty"`
	Result   *run.Result  `json:"result,omitempty"`
	Error    *ErrorDetail `json:"error,omitempty"`
}

// ErrorBody is the JSON of every error response: {"error":{"code","message"}}.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail names the class (code) and says what is wrong (message).
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}
