//go:build !linux

package isolate

import (
	"context"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
)

// SessionProcess is not available off Linux.
type SessionProcess struct{}

func (r *Runner) StartSession(context.Context, *Workspace, Exec) (*SessionProcess, error) {
	return nil, ErrUnsupported
}
func (r *Runner) StartSessionAhead(context.Context, *Workspace, Exec) (*SessionProcess, error) {
	return nil, ErrUnsupported
}
func (sp *SessionProcess) Relimit(limits.Limits) error                   { return ErrUnsupported }
func (sp *SessionProcess) Activate(context.Context) error                { return ErrUnsupported }
func (sp *SessionProcess) Control() io.Writer                            { return nil }
func (sp *SessionProcess) Answers() io.Reader                            { return nil }
func (sp *SessionProcess) SetOutput(io.Writer, io.Writer, int64, func()) {}
func (sp *SessionProcess) Cut(context.Context) (Output, error)           { return Output{}, ErrUnsupported }
func (sp *SessionProcess) Busy(string) error                             { return ErrUnsupported }
func (sp *SessionProcess) Idle() error                                   { return ErrUnsupported }
func (sp *SessionProcess) Interrupt(syscall.Signal) error                { return ErrUnsupported }
func (sp *SessionProcess) CPUTime() (time.Duration, error)               { return 0, ErrUnsupported }
func (sp *SessionProcess) Wait() (*run.Result, error)                    { return nil, ErrUnsupported }
func (sp *SessionProcess) Kill()                                         {}
func (sp *SessionProcess) Done() <-chan struct{}                         { return nil }
func (sp *SessionProcess) PutFile(string, io.Reader, os.FileMode, int64) (int64, error) {
	return 0, ErrUnsupported
}
func (sp *SessionProcess) WriteFiles(context.Context, []run.File) error { return ErrUnsupported }
