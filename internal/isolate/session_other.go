//go:build !linux

package isolate

import (
	"context"
	"io"
	"syscall"
	"time"
)

func (r *Runner) StartSession(context.Context, *Workspace, Exec) (*Process, error) {
	return nil, ErrUnsupported
}
func (p *Process) Control() io.Writer                            { return nil }
func (p *Process) Answers() io.Reader                            { return nil }
func (p *Process) SetOutput(io.Writer, io.Writer, int64, func()) {}
func (p *Process) Cut(context.Context) (Output, error)           { return Output{}, ErrUnsupported }
func (p *Process) Interrupt(syscall.Signal) error                { return ErrUnsupported }
func (p *Process) CPUTime() (time.Duration, error)               { return 0, ErrUnsupported }
