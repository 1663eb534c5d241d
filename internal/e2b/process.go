package e2b

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/sandboxd/sandboxd/internal/e2b/envd/process"
	"github.com/sandboxd/sandboxd/internal/e2b/envd/process/processconnect"
	"github.com/sandboxd/sandboxd/internal/errdefs"
	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
)

// Commands (envd's Process.Start) run inside the sandbox as a cell of its
// default Python session: the cell starts the argv the SDK sent (E2B's
// SDK sends ["/bin/bash", "-l", "-c", cmd]: a shell inside the sandbox,
// which is the confinement) with subprocess, without a shell of its own,
// and answers its exit code. The child inherits the kernel's stdout and
// stderr, which are the cell's live streams, so its output arrives as it
// is written. A command waits for a running cell of the same sandbox, as
// the cells of a notebook do.

// processService is envd's Process service. Stdin, PTYs and attaching to
// a running process again are not offered.
type processService struct {
	s     *Server
	procs procTable
	processconnect.UnimplementedProcessHandler
}

// homePath finds the E2B home in a command's words: inside the sandbox
// it is /workspace.
var homePath = regexp.MustCompile(`/home/user\b`)

// commandCell is the cell that runs a command: its argv, working
// directory and extra environment go in as base64 JSON, so nothing of
// them is Python syntax; its value is the exit code (negative: killed by
// that signal).
func commandCell(argv []string, cwd string, env map[string]string) string {
	spec, _ := json.Marshal(map[string]any{"argv": argv, "cwd": cwd, "env": env})
	return fmt.Sprintf(`(lambda sp, os, a: sp.run(a["argv"], cwd=a["cwd"], env={**os.environ, **a["env"]}, stdin=sp.DEVNULL).returncode)(__import__("subprocess"), __import__("os"), __import__("json").loads(__import__("base64").b64decode(%q)))`,
		base64.StdEncoding.EncodeToString(spec))
}

// procStream sends a command's events; Send is not safe for concurrent
// use and must not be called once Start has returned.
type procStream struct {
	mu     sync.Mutex
	stream *connect.ServerStream[process.StartResponse]
	done   bool
}

func (p *procStream) send(ev *process.ProcessEvent) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.done {
		_ = p.stream.Send(&process.StartResponse{Event: ev})
	}
}

func (p *procStream) close() {
	p.mu.Lock()
	p.done = true
	p.mu.Unlock()
}

// outputWriter sends what a command writes to one stream as data events.
type outputWriter struct {
	p      *procStream
	stderr bool
}

func (o outputWriter) Write(b []byte) (int, error) {
	data := &process.ProcessEvent_DataEvent{Output: &process.ProcessEvent_DataEvent_Stdout{Stdout: append([]byte(nil), b...)}}
	if o.stderr {
		data.Output = &process.ProcessEvent_DataEvent_Stderr{Stderr: append([]byte(nil), b...)}
	}
	o.p.send(&process.ProcessEvent{Event: &process.ProcessEvent_Data{Data: data}})
	return len(b), nil
}

// procTable numbers a Server's running commands, so SendSignal can name
// one by the pid their start event gave.
type procTable struct {
	mu      sync.Mutex
	next    uint32
	running map[uint32]runningProc
}

// runningProc is a command: its sandbox, and how to stop it.
type runningProc struct {
	sandbox string
	stop    context.CancelFunc
}

func (t *procTable) start(sandbox string, stop context.CancelFunc) uint32 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.running == nil {
		t.running = map[uint32]runningProc{}
	}
	t.next++
	t.running[t.next] = runningProc{sandbox: sandbox, stop: stop}
	return t.next
}

func (t *procTable) end(pid uint32) {
	t.mu.Lock()
	delete(t.running, pid)
	t.mu.Unlock()
}

func (t *procTable) get(pid uint32) (runningProc, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.running[pid]
	return p, ok
}

func (p *processService) Start(ctx context.Context, req *connect.Request[process.StartRequest], stream *connect.ServerStream[process.StartResponse]) error {
	cfg := req.Msg.GetProcess()
	if cfg == nil || cfg.GetCmd() == "" {
		return connect.NewError(connect.CodeInvalidArgument, errors.New("process.cmd is empty"))
	}
	if req.Msg.Pty != nil {
		return connect.NewError(connect.CodeUnimplemented, fmt.Errorf("%w: PTYs", errNotOffered))
	}
	sess, err := p.s.mainSession(sandboxFrom(ctx))
	if err != nil {
		return connectError(err)
	}
	cwd := "/workspace"
	if cfg.Cwd != nil && cfg.GetCwd() != "" {
		name, err := workspaceName(cfg.GetCwd())
		if err != nil {
			return connectError(err)
		}
		cwd = "/workspace/" + name
	}
	argv := []string{cfg.GetCmd()}
	for _, a := range cfg.GetArgs() {
		argv = append(argv, homePath.ReplaceAllString(a, "/workspace"))
	}
	env := cfg.GetEnvs()
	if env == nil {
		env = map[string]string{}
	}
	timeout := p.s.cfg.CellTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, max(time.Until(dl), time.Millisecond))
	}
	ps := &procStream{stream: stream}
	defer ps.close()
	// SendSignal cancels ctx: a waiting command leaves the queue, a
	// running one's cell is interrupted, which kills the program.
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	pid := p.procs.start(sandboxFrom(ctx).id, stop)
	defer p.procs.end(pid)
	ps.send(&process.ProcessEvent{Event: &process.ProcessEvent_Start{Start: &process.ProcessEvent_StartEvent{Pid: pid}}})
	res, err := sess.Exec(ctx, run.CellRequest{Code: commandCell(argv, cwd, env), Timeout: limits.Duration(timeout)},
		run.CellStream{Stdout: outputWriter{p: ps}, Stderr: outputWriter{p: ps, stderr: true}})
	if err != nil {
		return connectError(err)
	}
	p.s.logCell(sandboxFrom(ctx), "command", res)
	if ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return connect.NewError(connect.CodeDeadlineExceeded, fmt.Errorf("the command ran past its timeout and was stopped: %s", res.Reason))
	}
	ps.send(&process.ProcessEvent{Event: &process.ProcessEvent_End{End: endEvent(res)}})
	return nil
}

// endEvent is a command's end from its cell's: the exit code the cell
// answered, or -1 with the reason when the cell failed (a limit, an
// error starting the program).
func endEvent(res *run.CellResult) *process.ProcessEvent_EndEvent {
	if res.Status == run.StatusOK {
		if code, err := strconv.Atoi(res.Result["text/plain"]); err == nil {
			if code < 0 {
				return &process.ProcessEvent_EndEvent{ExitCode: -1, Exited: false, Status: "signal: " + strconv.Itoa(-code)}
			}
			return &process.ProcessEvent_EndEvent{ExitCode: int32(code), Exited: true, Status: "exit status " + strconv.Itoa(code)}
		}
	}
	why := res.Reason
	if res.Error != nil {
		why = res.Error.Name + ": " + res.Error.Value
		if res.Reason != "" {
			why += " (" + res.Reason + ")"
		}
	}
	return &process.ProcessEvent_EndEvent{ExitCode: -1, Status: string(res.Status), Error: &why}
}

// SendSignal stops a command, whatever the signal: one waiting for its
// turn is dropped, a running one's cell interrupted, which kills it.
func (p *processService) SendSignal(ctx context.Context, req *connect.Request[process.SendSignalRequest]) (*connect.Response[process.SendSignalResponse], error) {
	pid := req.Msg.GetProcess().GetPid()
	proc, ok := p.procs.get(pid)
	if !ok || proc.sandbox != sandboxFrom(ctx).id {
		return nil, connectError(fmt.Errorf("%w: no running process %d", errdefs.ErrNotFound, pid))
	}
	proc.stop()
	return connect.NewResponse(&process.SendSignalResponse{}), nil
}
