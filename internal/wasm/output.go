package wasm

import (
	"github.com/sandboxd/sandboxd/internal/output"
)

// capture is a guest's stdout or stderr (see package output).
type capture = output.Capture
