package nsinit

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"syscall"
)

// fill is the filler's whole life (see fill.go): copy stdin to FillFD and
// report. The copy is a splice from the pipe into the file, so the bytes
// never pass through the filler's own memory.
func fill() int {
	dst := os.NewFile(FillFD, "file")
	n, err := io.Copy(dst, os.Stdin)
	res := FillResult{Written: n}
	if err != nil {
		res.Op, res.Error = "write", err.Error()
		var se *os.SyscallError
		if errors.As(err, &se) {
			res.Op = se.Syscall
		}
		var errno syscall.Errno
		if errors.As(err, &errno) {
			res.Errno = int(errno)
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(&res); err != nil {
		return 1
	}
	return 0
}
