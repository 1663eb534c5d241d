//go:build !linux

package isolate

import (
	"context"
	"fmt"
	"runtime"

	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/workspace"
)

// Runner is not available off Linux; New says so.
type Runner struct{}

// Workspace is not available off Linux.
type Workspace struct{}

// New returns ErrUnsupported: the process backend needs Linux.
func New(Config) (*Runner, error) {
	return nil, fmt.Errorf("%w: it needs Linux namespaces and cgroups (this is %s)", ErrUnsupported, runtime.GOOS)
}

// HostMemory returns ErrUnsupported: it reads Linux's /proc and cgroups.
func HostMemory() (limits.Bytes, string, error) {
	return 0, "", fmt.Errorf("%w: finding the host's memory needs Linux (this is %s)", ErrUnsupported, runtime.GOOS)
}

func (r *Runner) CgroupVersion() string                         { return "" }
func (r *Runner) InitKind() string                              { return "" }
func (r *Runner) CollectLimits() workspace.CollectLimits        { return workspace.CollectLimits{} }
func (r *Runner) Sweep() error                                  { return ErrUnsupported }
func (r *Runner) NewWorkspace(limits.Bytes) (*Workspace, error) { return nil, ErrUnsupported }
func (w *Workspace) ID() string                                 { return "" }
func (w *Workspace) WriteFile(run.File) error                   { return ErrUnsupported }
func (w *Workspace) MkdirInternal(string) error                 { return ErrUnsupported }
func (w *Workspace) WriteInternal(run.File) error               { return ErrUnsupported }
func (w *Workspace) Close() error                               { return nil }
func (w *Workspace) Collect(workspace.CollectLimits) ([]run.OutputFile, bool, error) {
	return nil, false, ErrUnsupported
}
func (r *Runner) Run(context.Context, *Workspace, Exec) (*run.Result, error) {
	return nil, ErrUnsupported
}

// Zygote is not available off Linux.
type Zygote struct{}

func (r *Runner) NewZygote([]string, []byte, []string) (*Zygote, error) { return nil, ErrUnsupported }
func (z *Zygote) Close() error                                          { return nil }

// HeldProcess is not available off Linux.
type HeldProcess struct{}

func (r *Runner) StartHeld(context.Context, *Workspace, Exec) (*HeldProcess, error) {
	return nil, ErrUnsupported
}
func (r *Runner) StartEntered(context.Context, *Workspace, Exec, *Zygote) (*HeldProcess, error) {
	return nil, ErrUnsupported
}
func (h *HeldProcess) Entered() bool                              { return false }
func (h *HeldProcess) Activate(context.Context, Activation) error { return ErrUnsupported }
func (h *HeldProcess) WaitReady(context.Context) error            { return ErrUnsupported }
func (h *HeldProcess) Foreground() error                          { return ErrUnsupported }
func (h *HeldProcess) Wait() (*run.Result, error)                 { return nil, ErrUnsupported }
func (h *HeldProcess) Kill()                                      {}
func (h *HeldProcess) Done() <-chan struct{}                      { return nil }
