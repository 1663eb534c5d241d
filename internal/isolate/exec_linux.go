package isolate

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sandboxd/sandboxd/internal/isolate/nsinit"
	"github.com/sandboxd/sandboxd/internal/run"
)

// namespaces every run gets, in the order the result lists them.
var namespaces = []struct {
	name string
	flag uintptr
}{
	{"user", unix.CLONE_NEWUSER},
	{"pid", unix.CLONE_NEWPID},
	{"mount", unix.CLONE_NEWNS},
	{"network", unix.CLONE_NEWNET},
	{"ipc", unix.CLONE_NEWIPC},
	{"uts", unix.CLONE_NEWUTS},
	{"cgroup", unix.CLONE_NEWCGROUP},
	{"time", unix.CLONE_NEWTIME},
}

// drainGrace bounds how long the output may take to reach EOF after the
// run's init exited. Init's exit kills every process of the run, so the
// pipes close at once; the bound only guards against a kernel surprise.
const drainGrace = 2 * time.Second

// killReason is the limit the supervisor acted on, if any.
type killReason int

const (
	killNone killReason = iota
	killTimeout
	killCPU
	killOutput
	killCanceled
)

// Run executes e in the workspace and returns its result once every process
// of the execution is gone and its output is drained. The result is never
// nil; when the sandbox itself failed, its Status is internal_error and the
// error is returned too.
//
// It is the one-shot mode: the sandbox is activated as soon as the program
// runs, with the limits it was built with, so they are applied once.
func (r *Runner) Run(ctx context.Context, ws *Workspace, e Exec) (*run.Result, error) {
	s, err := r.start(ctx, ws, e, startOpts{})
	if err != nil {
		res := failed(r.isolation(), ws.id, err)
		if ctx.Err() != nil {
			// The caller went (or its deadline passed) while the
			// sandbox was being built: the same result as a cancel
			// once the program runs, not a failure of the sandbox.
			res.SetCanceled(context.Cause(ctx))
			return res, nil
		}
		return res, err
	}
	// The output is live already: the captures were made with e's writers.
	cpu, _ := s.cg.cpu()
	s.feedStdin(e.Stdin)
	s.begin(runActivation(ctx, e.Limits, cpu))
	return s.Wait()
}

// failed is the result of a run whose sandbox failed (run.InternalError,
// whose text is bounded, with the run's id and isolation).
func failed(iso run.Isolation, id string, err error) *run.Result {
	res := run.InternalError(err)
	res.ID, res.Isolation = id, iso
	return res
}

func (r *Runner) isolation() run.Isolation {
	iso := run.Isolation{
		Backend:    run.BackendProcess,
		Cgroup:     r.cg.version(),
		Seccomp:    !r.cfg.NoSeccomp,
		NoNewPrivs: true,
		Rootfs:     "pivot_root",
		UID:        SandboxUID,
		Network:    "none",
		Init:       r.InitKind(),
	}
	for _, ns := range namespaces {
		iso.Namespaces = append(iso.Namespaces, ns.name)
	}
	return iso
}

// pipes are the parent's ends and the child's ends of the run's pipes.
type pipes struct {
	cfgW, statR, outR, errR, inW *os.File
	cfgR, statW, outW, errW, inR *os.File
	// ctlW/ctlR: the program's control pipe (its fd 3), and rdyR/rdyW its
	// pipe back (its fd 4: readiness when held, answers in a session),
	// with startOpts.control.
	ctlW, ctlR *os.File
	rdyR, rdyW *os.File
}

func newPipes(control bool) (*pipes, error) {
	p := &pipes{}
	pairs := []struct{ r, w **os.File }{
		{&p.cfgR, &p.cfgW}, {&p.statR, &p.statW}, {&p.outR, &p.outW}, {&p.errR, &p.errW}, {&p.inR, &p.inW},
	}
	if control {
		pairs = append(pairs, struct{ r, w **os.File }{&p.ctlR, &p.ctlW}, struct{ r, w **os.File }{&p.rdyR, &p.rdyW})
	}
	for _, pr := range pairs {
		r, w, err := os.Pipe()
		if err != nil {
			p.closeAll()
			return nil, fmt.Errorf("create pipe: %w", err)
		}
		*pr.r, *pr.w = r, w
	}
	return p, nil
}

// programFiles are the child's ends of the program's own pipes: its fds
// from 3 on.
func (p *pipes) programFiles() []*os.File {
	if p.ctlR == nil {
		return nil
	}
	return []*os.File{p.ctlR, p.rdyW}
}

func (p *pipes) closeChild() {
	for _, f := range []*os.File{p.cfgR, p.statW, p.outW, p.errW, p.inR, p.ctlR, p.rdyW} {
		if f != nil {
			f.Close()
		}
	}
}

func (p *pipes) closeAll() {
	p.closeChild()
	for _, f := range []*os.File{p.cfgW, p.statR, p.outR, p.errR, p.inW, p.ctlW, p.rdyR} {
		if f != nil {
			f.Close()
		}
	}
}

// readMessages forwards init's messages until EOF (init gone).
func readMessages(dec *json.Decoder, out chan<- nsinit.Message) {
	defer close(out)
	for {
		var m nsinit.Message
		if err := dec.Decode(&m); err != nil {
			return
		}
		out <- m
	}
}
