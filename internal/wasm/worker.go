package wasm

import (
	"bufio"
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"

	"github.com/sandboxd/sandboxd/internal/run"
)

// A worker is this same binary started again as a wasm worker process: it
// holds a wazero runtime made without WithCloseOnContextDone, so guests run
// at full speed, and the runner enforces deadlines by killing it. One run
// at a time; a worker that finishes a run cleanly serves the next.
//
// The protocol, gob-encoded, over two inherited pipes:
//
//	runner                                       worker (fd 3 in, fd 4 out)
//	  | -- toWorker{Init} ----------------------> |  runtime, WASI, cache
//	  | <------------------------ fromWorker{Ready}|
//	  | -- toWorker{Job, Stdin...} -------------> |  load module (cache)
//	  | -- toWorker{Stdin, StdinEOF} (streamed) -> |
//	  | <----------------- fromWorker{Started: tid}|  guest runs
//	  | <------ fromWorker{Out}, fromWorker{Peak} |  live output, memory
//	  | <-------------------- fromWorker{End} ---- |  guest ended
//	  | -- toWorker{Job} ... (next run) --------> |
//	  X  kill (deadline, CPU, output, cancel)     X
//
// Closing fd 3 makes an idle worker exit. The runner never waits for a
// worker that has a guest running: it kills it.

// loadGrace bounds how long a worker may take to load a module before its
// guest starts: a cold compilation of python.wasm takes seconds, and the
// runner compiled it already, so this only catches a stuck worker.
const loadGrace = 2 * time.Minute

// workerArg0 is argv[0] of a worker process.
const workerArg0 = "sandboxd-wasm-worker"

// maybeRunCalled records that this binary's main calls MaybeRun, so a
// Runner may start workers from it.
var maybeRunCalled atomic.Bool

// MaybeRun makes this process a wasm worker, and never returns, when it was
// started as one; otherwise it returns at once. Call it first thing in
// main (and in TestMain), next to nsinit.MaybeRun: a Runner in ModeWorker
// re-executes /proc/self/exe as its workers, and ModeAuto uses workers only
// in a binary that calls MaybeRun.
func MaybeRun() {
	maybeRunCalled.Store(true)
	if len(os.Args) == 0 || os.Args[0] != workerArg0 {
		return
	}
	os.Exit(workerMain())
}

// toWorker is a message from the runner to a worker.
type toWorker struct {
	Init *workerInit
	Job  *workerJob
	// Load asks the worker to load these modules now (Runner.Warm); it
	// answers Ready, or Err.
	Load []string
	// Compile asks a compile worker to compile the module at this path
	// into the cache and check it; it answers Compiled.
	Compile string
	// Stdin carries streamed stdin for run Seq.
	Seq      uint64
	Stdin    []byte
	StdinEOF bool
}

type workerInit struct {
	CacheDir string
}

type workerJob struct {
	Seq   uint64
	Guest guestJob
	// Output caps what is forwarded of each stream: past it the runner
	// kills the worker anyway.
	Output int64
	// Stdin is the whole stdin when it is known up front; otherwise it is
	// streamed (StdinStream).
	Stdin       []byte
	StdinStream bool
}

// fromWorker is a message from a worker to the runner.
type fromWorker struct {
	Ready   bool
	Started bool
	// Tid is the thread the guest runs on (with Started).
	Tid      int
	Fd       int
	Out      []byte
	Peak     uint64
	End      *guestEnd
	Compiled *compiledInfo
	// Err is a failure of the worker itself (a module that does not
	// load); the run is an internal error and the worker may serve on.
	Err string
}

// compiledInfo is what the runner needs to know of a module a compile
// worker compiled: the size its memory starts at, or why it cannot run
// (Err: it does not compile, or is not a WASI command).
type compiledInfo struct {
	MinPages uint32
	Err      string
}

// workerMain serves runs until fd 3 is closed.
func workerMain() int {
	// First, before any input is read: nothing a module can make this
	// process do happens outside the filter.
	if err := confine(); err != nil {
		fmt.Fprintln(os.Stderr, "wasm worker:", err)
		return 2
	}
	in, out := os.NewFile(3, "wasm-worker-in"), os.NewFile(4, "wasm-worker-out")
	if in == nil || out == nil {
		fmt.Fprintln(os.Stderr, "wasm worker: fds 3 and 4 are not open")
		return 2
	}
	w := &workerSide{dec: gob.NewDecoder(bufio.NewReader(in)), enc: gob.NewEncoder(out)}
	if err := w.serve(context.Background()); err != nil && !errors.Is(err, io.EOF) {
		fmt.Fprintln(os.Stderr, "wasm worker:", err)
		return 1
	}
	return 0
}

type workerSide struct {
	dec   *gob.Decoder
	encMu sync.Mutex
	enc   *gob.Encoder
	rt    wazero.Runtime
	mods  map[moduleKey]wazero.CompiledModule

	// stdin of the run in progress, fed by the reader goroutine.
	stdinMu  sync.Mutex
	stdinSeq uint64
	stdinW   *io.PipeWriter
}

func (w *workerSide) send(m fromWorker) {
	w.encMu.Lock()
	defer w.encMu.Unlock()
	// A runner that is gone kills this process; nothing to do on error.
	_ = w.enc.Encode(&m)
}

func (w *workerSide) serve(ctx context.Context) error {
	var init toWorker
	if err := w.dec.Decode(&init); err != nil {
		return err
	}
	if init.Init == nil {
		return errors.New("first message is not Init")
	}
	cache, err := wazero.NewCompilationCacheWithDir(init.Init.CacheDir)
	if err != nil {
		return fmt.Errorf("open the compilation cache: %w", err)
	}
	// No WithCloseOnContextDone: the point of a worker. The runner kills
	// the process at the deadline.
	w.rt = wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler().WithCompilationCache(cache))
	if err := instantiateWASI(ctx, w.rt); err != nil {
		return err
	}
	w.mods = map[moduleKey]wazero.CompiledModule{}
	w.send(fromWorker{Ready: true})

	jobs := make(chan workerRun)
	readErr := make(chan error, 1)
	go func() { readErr <- w.read(jobs) }()
	for {
		select {
		case job := <-jobs:
			if job.load != nil {
				w.warm(ctx, job.load)
				continue
			}
			if job.compile != "" {
				w.send(fromWorker{Compiled: compileCheck(ctx, w.rt, job.compile)})
				continue
			}
			w.run(ctx, job.job, job.stdin)
		case err := <-readErr:
			return err
		}
	}
}

// workerRun is a job with its stdin, which the reader set up before the
// next message (maybe the first stdin chunk) is decoded.
type workerRun struct {
	job     *workerJob
	stdin   io.Reader
	load    []string
	compile string
}

// read decodes the runner's messages: jobs go to the serving loop, stdin
// to the run in progress.
func (w *workerSide) read(jobs chan<- workerRun) error {
	for {
		var m toWorker
		if err := w.dec.Decode(&m); err != nil {
			return err
		}
		switch {
		case m.Load != nil:
			jobs <- workerRun{load: m.Load}
		case m.Compile != "":
			jobs <- workerRun{compile: m.Compile}
		case m.Job != nil:
			var stdin io.Reader = bytes.NewReader(m.Job.Stdin)
			if m.Job.StdinStream {
				pr, pw := io.Pipe()
				w.stdinMu.Lock()
				if w.stdinW != nil {
					w.stdinW.Close()
				}
				w.stdinSeq, w.stdinW = m.Job.Seq, pw
				w.stdinMu.Unlock()
				stdin = pr
			}
			jobs <- workerRun{job: m.Job, stdin: stdin}
		case m.Stdin != nil || m.StdinEOF:
			w.stdinMu.Lock()
			pw, cur := w.stdinW, w.stdinSeq
			w.stdinMu.Unlock()
			if pw == nil || m.Seq != cur {
				continue // for a run that is over
			}
			if len(m.Stdin) > 0 {
				// Blocks until the guest reads it, or its run ends.
				_, _ = pw.Write(m.Stdin)
			}
			if m.StdinEOF {
				pw.Close()
			}
		}
	}
}

func (w *workerSide) run(ctx context.Context, job *workerJob, stdin io.Reader) {
	if pr, ok := stdin.(*io.PipeReader); ok {
		defer func() {
			w.stdinMu.Lock()
			if w.stdinSeq == job.Seq {
				w.stdinW = nil
			}
			w.stdinMu.Unlock()
			pr.CloseWithError(io.EOF)
		}()
	}
	cm, err := w.load(ctx, job.Guest.Module)
	if err != nil {
		w.send(fromWorker{Err: err.Error()})
		return
	}
	gio := guestIO{
		stdin:  stdin,
		stdout: &forward{w: w, fd: 1, left: job.Output + 1},
		stderr: &forward{w: w, fd: 2, left: job.Output + 1},
	}
	hooks := guestHooks{
		started: func(func() time.Duration) { w.send(fromWorker{Started: true, Tid: gettid()}) },
		grown:   func(size uint64) { w.send(fromWorker{Peak: size}) },
	}
	end := runGuest(ctx, w.rt, cm, &job.Guest, gio, hooks)
	w.send(fromWorker{End: &end})
}

// compileCheck compiles the module at path, which writes its code to the
// compilation cache, and checks that it can run here.
func compileCheck(ctx context.Context, rt wazero.Runtime, path string) *compiledInfo {
	b, err := os.ReadFile(path)
	if err != nil {
		return &compiledInfo{Err: fmt.Sprintf("read module: %v", err)}
	}
	cm, err := rt.CompileModule(ctx, b)
	if err != nil {
		return &compiledInfo{Err: run.Clip(err.Error(), run.MaxMessage)}
	}
	defer cm.Close(ctx)
	if err := checkModule(cm); err != nil {
		return &compiledInfo{Err: err.Error()}
	}
	return &compiledInfo{MinPages: minPages(cm)}
}

// warm loads modules ahead of their first run.
func (w *workerSide) warm(ctx context.Context, paths []string) {
	for _, p := range paths {
		if _, err := w.load(ctx, p); err != nil {
			w.send(fromWorker{Err: err.Error()})
			return
		}
	}
	w.send(fromWorker{Ready: true})
}

// load returns the compiled module at path: from this worker's memory, or
// from the compilation cache the runner filled.
func (w *workerSide) load(ctx context.Context, path string) (wazero.CompiledModule, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	key := moduleKey{path: path, size: st.Size(), mtime: st.ModTime()}
	if cm, ok := w.mods[key]; ok {
		return cm, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	cm, err := w.rt.CompileModule(ctx, b)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	if len(w.mods) >= maxModules {
		for k, old := range w.mods {
			_ = old.Close(ctx)
			delete(w.mods, k)
			break
		}
	}
	w.mods[key] = cm
	return cm, nil
}

// forward sends a guest's output to the runner as it is written, up to
// left bytes: one byte past the cap is enough for the runner to see the
// overflow and stop the run.
type forward struct {
	w    *workerSide
	fd   int
	left int64
}

func (f *forward) Write(p []byte) (int, error) {
	n := int64(len(p))
	if f.left <= 0 {
		return len(p), nil
	}
	send := p
	if n > f.left {
		send = p[:f.left]
	}
	f.left -= int64(len(send))
	// Encoded (copied) before send returns: p can be reused.
	f.w.send(fromWorker{Fd: f.fd, Out: send})
	return len(p), nil
}
