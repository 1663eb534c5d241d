//go:build !linux

package output

import (
	"errors"
	"os"
)

// openTmpfile: O_TMPFILE is Linux's; create and remove instead (Spool.create).
func openTmpfile(string) (*os.File, error) { return nil, errors.ErrUnsupported }
