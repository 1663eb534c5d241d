//go:build !linux

package spool

import (
	"errors"
	"os"
)

// openTmpfile: O_TMPFILE is Linux's; create and remove instead (Dir.create).
func openTmpfile(string) (*os.File, error) { return nil, errors.ErrUnsupported }
