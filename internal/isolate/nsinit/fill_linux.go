package nsinit

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"syscall"
)

// fill is the filler's whole life (see fill.go): copy each file's chunks
// from stdin into it, and report on each.
func fill() int {
	if err := joinFillCgroup(); err != nil {
		fmt.Fprintln(os.Stderr, "sandboxd-fill:", err)
		return 1
	}
	in := os.Stdin
	out := json.NewEncoder(os.Stdout)
	for fd := FillFD; ; fd++ {
		n, err := chunkLen(in)
		if errors.Is(err, io.EOF) {
			return 0
		}
		res := fillOne(os.NewFile(uintptr(fd), "file"), in, n, err)
		if err := out.Encode(&res); err != nil {
			return 1
		}
		if res.Error != "" {
			// The next file's chunks cannot be found after a failed one.
			return 0
		}
	}
}

// joinFillCgroup joins the memory cgroup whose `tasks` file is at the fd
// argv[1] names, when it names one (cgroup v1), and closes it: 0 moves
// this thread alone, which MaybeRun locked and which makes every write.
func joinFillCgroup() error {
	if len(os.Args) < 2 {
		return nil
	}
	fd, err := strconv.Atoi(os.Args[1])
	if err != nil || fd < FillFD {
		return fmt.Errorf("bad cgroup fd %q", os.Args[1])
	}
	if err := joinTasks(fd); err != nil {
		return fmt.Errorf("join the memory cgroup: %w", err)
	}
	return nil
}

// fillOne copies one file's chunks, the first of length n (or the error
// reading its length), into dst.
func fillOne(dst *os.File, in io.Reader, n int64, err error) FillResult {
	var res FillResult
	for err == nil && n > 0 {
		var copied int64
		copied, err = io.CopyN(dst, in, n)
		res.Written += copied
		if err == nil {
			n, err = chunkLen(in)
		}
	}
	if err != nil {
		res.Op, res.Error = "write", err.Error()
		var se *os.SyscallError
		var pe *os.PathError
		switch {
		case errors.As(err, &pe):
			res.Op = pe.Op
		case errors.As(err, &se):
			res.Op = se.Syscall
		}
		var errno syscall.Errno
		if errors.As(err, &errno) {
			res.Errno = int(errno)
		}
	}
	return res
}

// chunkLen reads a chunk's length; EOF before any of it is io.EOF.
func chunkLen(in io.Reader) (int64, error) {
	var b [8]byte
	if _, err := io.ReadFull(in, b[:]); err != nil {
		return 0, err
	}
	n := binary.BigEndian.Uint64(b[:])
	if n > FillChunk {
		return 0, fmt.Errorf("a chunk of %d bytes: at most %d", n, FillChunk)
	}
	return int64(n), nil
}
