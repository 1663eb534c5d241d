package wasm

import (
	"bufio"
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sandboxd/sandboxd/internal/run"
)

// loadGrace bounds how long a worker may take to load a module before its
// guest starts: a cold compilation of python.wasm takes seconds, and the
// runner compiled it already, so this only catches a stuck worker.
const loadGrace = 2 * time.Minute

// workerPool runs guests in worker processes (see worker.go). Workers are
// started on demand, up to max at once; an idle worker waits for the next
// run; a worker is killed when its run hits a limit, and never reused.
type workerPool struct {
	cacheDir string
	log      *slog.Logger
	// slots has one token per worker that exists; idle holds the workers
	// waiting for a run. Both have room for max.
	slots chan struct{}
	idle  chan *worker

	mu     sync.Mutex
	closed bool
	seq    uint64
}

func newWorkerPool(cacheDir string, max int, log *slog.Logger) *workerPool {
	return &workerPool{cacheDir: cacheDir, log: log, slots: make(chan struct{}, max), idle: make(chan *worker, max)}
}

// worker is the runner's handle on one worker process.
type worker struct {
	cmd   *exec.Cmd
	in    *os.File // the worker's fd 3
	encMu sync.Mutex
	enc   *gob.Encoder
	msgs  chan fromWorker // closed when the worker's fd 4 reaches EOF
	// exited is closed once the process is reaped; err says how it ended.
	exited chan struct{}
	err    error
	stderr *tail
}

// send writes a message to the worker; runs and their stdin pumps share
// the encoder.
func (w *worker) send(m *toWorker) error {
	w.encMu.Lock()
	defer w.encMu.Unlock()
	return w.enc.Encode(m)
}

func (p *workerPool) close(ctx context.Context) error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	for {
		select {
		case w := <-p.idle:
			w.stop()
			<-p.slots
		default:
			return nil
		}
	}
}

// get returns an idle worker, or starts one if there is room, or waits for
// one of the two. An idle worker is preferred to starting one.
func (p *workerPool) get(ctx context.Context) (*worker, error) {
	for {
		p.mu.Lock()
		closed := p.closed
		p.mu.Unlock()
		if closed {
			return nil, ErrClosed
		}
		select {
		case w := <-p.idle:
			if p.alive(w) {
				return w, nil
			}
			continue
		default:
		}
		select {
		case w := <-p.idle:
			if p.alive(w) {
				return w, nil
			}
		case p.slots <- struct{}{}:
			w, err := p.spawn(ctx)
			if err != nil {
				<-p.slots
				return nil, err
			}
			return w, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// alive reports whether an idle worker is still there; one that died
// while idle gives its slot back.
func (p *workerPool) alive(w *worker) bool {
	select {
	case <-w.exited:
		<-p.slots
		return false
	default:
		return true
	}
}

// put returns a worker that finished its run cleanly.
func (p *workerPool) put(w *worker) {
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		w.stop()
		<-p.slots
		return
	}
	p.idle <- w
}

// discard kills a worker and frees its slot.
func (p *workerPool) discard(w *worker) {
	w.kill()
	<-p.slots
}

// spawn starts a worker: this binary again, with an empty environment,
// killed if this process dies, its stdout and stderr not ours.
func (p *workerPool) spawn(ctx context.Context) (*worker, error) {
	if !maybeRunCalled.Load() {
		return nil, errors.New("wasm workers need wasm.MaybeRun() at the start of main (or Config.Mode = ModeInProcess)")
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("create worker pipe: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, fmt.Errorf("create worker pipe: %w", err)
	}
	w := &worker{in: inW, enc: gob.NewEncoder(inW), msgs: make(chan fromWorker, 64), exited: make(chan struct{}), stderr: &tail{max: 4096}}
	w.cmd = &exec.Cmd{
		Path:       "/proc/self/exe",
		Args:       []string{workerArg0},
		Env:        []string{},
		Stderr:     w.stderr,
		ExtraFiles: []*os.File{inR, outW},
		SysProcAttr: &syscall.SysProcAttr{
			// If this process dies, its workers die, guests and all.
			Pdeathsig: syscall.SIGKILL,
		},
	}
	err = w.cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, fmt.Errorf("start wasm worker: %w", err)
	}
	go func() {
		w.err = w.cmd.Wait()
		close(w.exited)
	}()
	go func() {
		defer close(w.msgs)
		defer outR.Close()
		dec := gob.NewDecoder(bufio.NewReader(outR))
		for {
			var m fromWorker
			if err := dec.Decode(&m); err != nil {
				return
			}
			w.msgs <- m
		}
	}()
	if err := w.send(&toWorker{Init: &workerInit{CacheDir: p.cacheDir}}); err != nil {
		w.kill()
		return nil, fmt.Errorf("start wasm worker: %w", err)
	}
	select {
	case m, ok := <-w.msgs:
		if ok && m.Ready {
			p.log.Debug("wasm worker started", "pid", w.cmd.Process.Pid)
			return w, nil
		}
		w.kill()
		return nil, fmt.Errorf("wasm worker failed to start: %s", w.stderr.String())
	case <-ctx.Done():
		w.kill()
		return nil, ctx.Err()
	}
}

// stop ends an idle worker: at EOF on fd 3 it exits.
func (w *worker) stop() {
	w.in.Close()
	select {
	case <-w.exited:
	case <-time.After(time.Second):
		w.kill()
	}
}

// kill ends a worker at once and reaps it.
func (w *worker) kill() {
	_ = w.cmd.Process.Kill()
	w.in.Close()
	<-w.exited
}

// warm has a worker load modules ahead of their first run.
func (p *workerPool) warm(ctx context.Context, paths []string) error {
	w, err := p.get(ctx)
	if err != nil {
		return err
	}
	if err := w.send(&toWorker{Load: paths}); err != nil {
		p.discard(w)
		return fmt.Errorf("warm a wasm worker: %w", err)
	}
	select {
	case m, ok := <-w.msgs:
		switch {
		case !ok:
			p.discard(w)
			return fmt.Errorf("the wasm worker died: %s", w.stderr.String())
		case m.Err != "":
			p.put(w)
			return fmt.Errorf("warm a wasm worker: %s", run.Clip(m.Err, run.MaxMessage))
		}
		p.put(w)
		return nil
	case <-ctx.Done():
		p.discard(w)
		return ctx.Err()
	}
}

func (p *workerPool) nextSeq() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seq++
	return p.seq
}

func (p *workerPool) execute(ctx context.Context, ex *execution) (guestEnd, error, time.Duration, error) {
	w, err := p.get(ctx)
	if err != nil {
		return guestEnd{}, nil, 0, fmt.Errorf("get a wasm worker: %w", err)
	}
	seq := p.nextSeq()
	job := &workerJob{Seq: seq, Guest: *ex.job, Output: ex.stdout.Max()}
	stream := false
	switch in := ex.stdin.(type) {
	case nil:
	case *bytes.Reader, *strings.Reader, *bytes.Buffer:
		if job.Stdin, err = io.ReadAll(in); err != nil {
			p.put(w)
			return guestEnd{}, nil, 0, fmt.Errorf("read stdin: %w", err)
		}
	default:
		job.StdinStream, stream = true, true
	}
	if err := w.send(&toWorker{Job: job}); err != nil {
		p.discard(w)
		return guestEnd{}, nil, 0, fmt.Errorf("send the run to its wasm worker: %w (%s)", err, w.stderr.String())
	}
	s := &supervision{p: p, w: w, ex: ex, seq: seq}
	if stream {
		stop := make(chan struct{})
		defer close(stop)
		go s.pumpStdin(stop)
	}
	return s.run(ctx)
}

// supervision is the runner's side of one run in a worker.
type supervision struct {
	p   *workerPool
	w   *worker
	ex  *execution
	seq uint64
}

// pumpStdin streams the caller's stdin to the worker until it ends or the
// run does.
func (s *supervision) pumpStdin(stop <-chan struct{}) {
	buf := make([]byte, 32<<10)
	for {
		n, err := s.ex.stdin.Read(buf)
		select {
		case <-stop:
			return
		default:
		}
		if n > 0 {
			if s.w.send(&toWorker{Seq: s.seq, Stdin: bytes.Clone(buf[:n])}) != nil {
				return
			}
		}
		if err != nil {
			_ = s.w.send(&toWorker{Seq: s.seq, StdinEOF: true})
			return
		}
	}
}

// run reads the worker's messages until the guest ends, and kills the
// worker on a limit, a cancellation or the worker's death.
func (s *supervision) run(ctx context.Context) (guestEnd, error, time.Duration, error) {
	ex, w := s.ex, s.w
	overflow := make(chan struct{}, 2)
	onOver := func() { overflow <- struct{}{} }
	ex.stdout.SetOver(onOver)
	ex.stderr.SetOver(onOver)

	var (
		start    time.Time
		deadline <-chan time.Time
		tick     <-chan time.Time
		sched    string // the guest thread's schedstat file
		peak     uint64
	)
	load := time.NewTimer(loadGrace)
	defer load.Stop()
	cpuUsed := func() time.Duration { return readSchedstat(sched) }
	kill := func(cause error) (guestEnd, error, time.Duration, error) {
		wall := time.Duration(0)
		if !start.IsZero() {
			wall = time.Since(start)
		}
		cpu := cpuUsed()
		s.p.discard(w)
		return guestEnd{CPU: cpu, Peak: peak}, cause, wall, nil
	}
	for {
		select {
		case m, ok := <-w.msgs:
			switch {
			case !ok:
				s.p.discard(w) // reaps it: w.err is set
				return guestEnd{}, nil, 0, fmt.Errorf("the wasm worker died: %v: %s", w.err, w.stderr.String())
			case m.Started:
				start = time.Now()
				sched = fmt.Sprintf("/proc/%d/task/%d/schedstat", w.cmd.Process.Pid, m.Tid)
				t := time.NewTimer(ex.timeout)
				defer t.Stop()
				deadline = t.C
				if ex.cpu > 0 && ex.cpu < ex.timeout {
					tk := time.NewTicker(cpuPoll(ex.cpu))
					defer tk.Stop()
					tick = tk.C
				}
			case m.Out != nil:
				c := ex.stdout
				if m.Fd == 2 {
					c = ex.stderr
				}
				_, _ = c.Write(m.Out)
			case m.Peak != 0:
				peak = max(peak, m.Peak)
			case m.Err != "":
				s.p.put(w)
				return guestEnd{}, nil, 0, fmt.Errorf("wasm worker: %s", run.Clip(m.Err, run.MaxMessage))
			case m.End != nil:
				wall := time.Since(start)
				s.p.put(w)
				return *m.End, nil, wall, nil
			}
		case <-overflow:
			return kill(errOutput)
		case <-deadline:
			return kill(errTimeout)
		case <-tick:
			if cpuUsed() >= ex.cpu {
				return kill(errCPU)
			}
		case <-load.C:
			if start.IsZero() {
				s.p.discard(w)
				return guestEnd{}, nil, 0, fmt.Errorf("the wasm worker did not start the module within %s", loadGrace)
			}
		case <-ctx.Done():
			return kill(context.Cause(ctx))
		}
	}
}

// readSchedstat reads a thread's time on CPU, in ns, from its schedstat
// file ("on-cpu-ns wait-ns timeslices"); 0 if it cannot.
func readSchedstat(path string) time.Duration {
	if path == "" {
		return 0
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	f, _, _ := strings.Cut(string(b), " ")
	ns, err := strconv.ParseInt(f, 10, 64)
	if err != nil {
		return 0
	}
	return time.Duration(ns)
}

// tail keeps the last max bytes written to it: a worker's stderr, for the
// error when it dies.
type tail struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append([]byte(nil), t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.buf))
}
