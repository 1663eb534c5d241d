package wasm

import (
	"fmt"

	"github.com/sandboxd/sandboxd/internal/workspace"
)

// cleanName checks a client-given file name with the workspace rules both
// backends share, so a spec valid on one backend is valid on the other.
func cleanName(name string) (string, error) {
	n, err := workspace.CleanName(name)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return n, nil
}
