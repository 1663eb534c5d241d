package wasm

import (
	"bufio"
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sandboxd/sandboxd/internal/run"
)

// workerCacheDir is the compilation cache as a worker opens it: the
// directory the runner passes as its fd 5.
// workersSpawned numbers the workers this process started, whichever
// pool: their cgroups' names. Per pool, two runners in one process (a test
// binary, a daemon and its doctor probe) named two cgroups alike.
var workersSpawned atomic.Uint64

const workerCacheDir = "/proc/self/fd/5"

// workerSlack is what a run may make its worker allocate beyond its
// memory limit before the kernel kills it: the host's side of an instance
// (wazero's structures for its functions and globals, WASI's file table,
// buffers) and the garbage the Go heap holds until its next collection.
// A guest's own memory (linear memory, tables) cannot hide in it for
// long: linear memory is refused past the limit itself, and a table's
// elements cost 8 bytes each. A -race build needs more (raceSlack).
const workerSlack = 32<<20 + raceSlack

// poolConfig says how workers are started and confined.
type poolConfig struct {
	cacheDir string
	max      int
	// uid is the host uid (and gid) of the worker in slot 0; slot i runs
	// as uid+i. Negative: workers run as this process does (it is not
	// root and cannot change its uid).
	uid int
	// cgroupParent is the cgroup under which each worker gets its own
	// memory cgroup; "" for none (this process cannot create cgroups).
	cgroupParent string
}

// workerPool runs guests in worker processes (see worker.go). Workers are
// started on demand, up to max at once; an idle worker waits for the next
// run; a worker is killed when its run hits a limit, and never reused.
// Each worker runs as its own unprivileged uid (by slot), in a memory
// cgroup of its own whose limit is set for each run.
type workerPool struct {
	cacheDir string
	uid      int
	cgroups  *cgroupRoot
	log      *slog.Logger
	// slots holds the slot numbers no worker uses; idle holds the workers
	// waiting for a run. Both have room for max.
	slots chan int
	idle  chan *worker
	// compiling has a token per compile worker running (compileWorkers).
	compiling chan struct{}

	mu     sync.Mutex
	closed bool
	seq    uint64
}

func newWorkerPool(cfg poolConfig, log *slog.Logger) (*workerPool, error) {
	p := &workerPool{cacheDir: cfg.cacheDir, uid: cfg.uid, log: log, slots: make(chan int, cfg.max), idle: make(chan *worker, cfg.max),
		compiling: make(chan struct{}, compileWorkers)}
	for i := range cfg.max {
		p.slots <- i
	}
	if uid := p.compilerUID(); uid >= 0 {
		// Only the compile workers write the cache; the run workers,
		// other uids, read what tidyCache made readable.
		if err := chownTree(cfg.cacheDir, uid); err != nil {
			return nil, fmt.Errorf("give the compilation cache to the compile workers: %w", err)
		}
	}
	if cfg.cgroupParent != "" {
		var err error
		if p.cgroups, err = newCgroupRoot(cfg.cgroupParent); err != nil {
			return nil, fmt.Errorf("wasm workers' cgroup: %w", err)
		}
	}
	return p, nil
}

// worker is the runner's handle on one worker process.
type worker struct {
	slot  int
	uid   int // -1: this process's
	cg    *memCgroup
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
			w.removeCgroup(p.log)
			p.slots <- w.slot
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
		case slot := <-p.slots:
			w, err := p.spawn(ctx, slot, p.slotUID(slot))
			if err != nil {
				p.slots <- slot
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
		w.removeCgroup(p.log)
		p.slots <- w.slot
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
		w.removeCgroup(p.log)
		p.slots <- w.slot
		return
	}
	p.idle <- w
}

// discard kills a worker and frees its slot.
func (p *workerPool) discard(w *worker) {
	w.kill()
	w.removeCgroup(p.log)
	p.slots <- w.slot
}

// spawn starts the worker of a slot: this binary again, with an empty
// environment, killed if this process dies, its stdout and stderr not
// ours, as the slot's uid with no capabilities, in a memory cgroup of its
// own. It confines itself further (seccomp, no_new_privs) before it reads
// its first message.
func (p *workerPool) spawn(ctx context.Context, slot, uid int) (*worker, error) {
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
	// The cache directory is handed over open, as fd 5: the worker reaches
	// it through /proc/self/fd/5 whatever the directories above it allow
	// its uid (root's ~/.cache is under /root, 0700).
	cacheFd, err := os.Open(p.cacheDir)
	if err != nil {
		inR.Close()
		inW.Close()
		outR.Close()
		outW.Close()
		return nil, fmt.Errorf("open the compilation cache for a worker: %w", err)
	}
	defer cacheFd.Close()
	w := &worker{slot: slot, uid: -1, in: inW, enc: gob.NewEncoder(inW), msgs: make(chan fromWorker, 64), exited: make(chan struct{}), stderr: &tail{max: 4096}}
	if p.cgroups != nil {
		name := fmt.Sprintf("%d-%d", os.Getpid(), workersSpawned.Add(1))
		if w.cg, err = p.cgroups.create(name); err != nil {
			inR.Close()
			inW.Close()
			outR.Close()
			outW.Close()
			return nil, err
		}
	}
	w.cmd = &exec.Cmd{
		Path:       "/proc/self/exe",
		Args:       []string{workerArg0},
		Env:        []string{},
		Stderr:     w.stderr,
		ExtraFiles: []*os.File{inR, outW, cacheFd},
		SysProcAttr: &syscall.SysProcAttr{
			// If this process dies, its workers die, guests and all.
			Pdeathsig: syscall.SIGKILL,
		},
	}
	if uid >= 0 {
		// setgroups, setgid, setuid before exec: a non-root uid after
		// exec has no capabilities, permitted or effective.
		w.uid = uid
		w.cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(w.uid), Gid: uint32(w.uid), Groups: []uint32{}}
	}
	err = w.cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		w.removeCgroup(p.log)
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
	if w.cg != nil {
		// Before Init: until then the worker only waits on fd 3.
		if err := w.cg.add(w.cmd.Process.Pid); err != nil {
			w.kill()
			w.removeCgroup(p.log)
			return nil, err
		}
	}
	if err := w.send(&toWorker{Init: &workerInit{CacheDir: workerCacheDir}}); err != nil {
		w.kill()
		w.removeCgroup(p.log)
		return nil, fmt.Errorf("start wasm worker: %w", err)
	}
	select {
	case m, ok := <-w.msgs:
		if ok && m.Ready {
			p.log.Debug("wasm worker started", "pid", w.cmd.Process.Pid, "uid", w.uid)
			return w, nil
		}
		w.kill()
		w.removeCgroup(p.log)
		return nil, fmt.Errorf("wasm worker failed to start: %s", w.stderr.String())
	case <-ctx.Done():
		w.kill()
		w.removeCgroup(p.log)
		return nil, ctx.Err()
	}
}

// removeCgroup removes the cgroup of a worker that is gone.
func (w *worker) removeCgroup(log *slog.Logger) {
	if w.cg == nil {
		return
	}
	if err := w.cg.remove(); err != nil {
		log.Warn("remove a wasm worker's cgroup", "err", err)
	}
	w.cg = nil
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
	mem, err := w.prepare(ex.job)
	if err != nil {
		p.discard(w)
		return guestEnd{}, nil, 0, err
	}
	if err := w.send(&toWorker{Job: job}); err != nil {
		p.discard(w)
		return guestEnd{}, nil, 0, fmt.Errorf("send the run to its wasm worker: %w (%s)", err, w.stderr.String())
	}
	s := &supervision{p: p, w: w, ex: ex, seq: seq, mem: mem}
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
	mem runMemory
}

// runMemory is a run's account in its worker's cgroup.
type runMemory struct {
	cg *memCgroup // nil without cgroups
	// base is the worker's usage before the run: its runtime and the
	// compiled code it holds, which are not the guest's doing.
	base uint64
	// ooms is the cgroup's OOM kill count before the run.
	ooms uint64
}

// slotUID is the uid of the worker in slot (-1: this process's).
func (p *workerPool) slotUID(slot int) int {
	if p.uid < 0 {
		return -1
	}
	return p.uid + slot
}

// compilerUID is the uid of the compile workers, the one uid that may
// write the compilation cache (-1: this process's).
func (p *workerPool) compilerUID() int {
	if p.uid < 0 {
		return -1
	}
	return p.uid - 1
}

// prepare gives the worker the run: its workspace (made by this process)
// becomes the worker's uid's, and its memory is limited (see limit).
func (w *worker) prepare(job *guestJob) (runMemory, error) {
	if w.uid >= 0 {
		if err := chownTree(job.Dir, w.uid); err != nil {
			return runMemory{}, err
		}
	}
	return w.limit(job.Memory)
}

// limit sets the worker's cgroup's limit to its usage now plus memory and
// workerSlack, with the peak reset, so that what the guest (or the module
// being compiled) makes the worker allocate, of any kind, is what the
// cgroup counts above base.
func (w *worker) limit(memory uint64) (runMemory, error) {
	if w.cg == nil {
		return runMemory{}, nil
	}
	m := runMemory{cg: w.cg}
	var err error
	if m.base, err = w.cg.usage(); err != nil {
		return runMemory{}, err
	}
	if m.ooms, err = w.cg.oomKills(); err != nil {
		return runMemory{}, err
	}
	if err := w.cg.setLimit(m.base + memory + workerSlack); err != nil {
		return runMemory{}, err
	}
	if err := w.cg.resetPeak(); err != nil {
		return runMemory{}, err
	}
	return m, nil
}

// peak is what the run added to its worker's memory at most: the cgroup's
// peak above base (0 without a cgroup).
func (m runMemory) peak() uint64 {
	if m.cg == nil {
		return 0
	}
	p, err := m.cg.peak()
	if err != nil || p < m.base {
		return 0
	}
	return p - m.base
}

// oomKilled reports whether the kernel killed the worker for the cgroup's
// limit during the run.
func (m runMemory) oomKilled() bool {
	if m.cg == nil {
		return false
	}
	n, err := m.cg.oomKills()
	return err == nil && n > m.ooms
}

// chownTree gives the tree at dir, which this process just made and no
// guest has seen yet, to uid (and the gid of the same number).
func chownTree(dir string, uid int) error {
	err := filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, uid)
	})
	if err != nil {
		return fmt.Errorf("give %s to uid %d: %w", dir, uid, err)
	}
	return nil
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
		// lastCPU is the guest's CPU time at the last tick: what is
		// reported when the kernel killed the worker, whose schedstat is
		// gone by then.
		lastCPU time.Duration
	)
	load := time.NewTimer(loadGrace)
	defer load.Stop()
	limited := ex.cpu > 0 && ex.cpu < ex.timeout
	cpuUsed := func() time.Duration {
		lastCPU = max(lastCPU, readSchedstat(sched))
		return lastCPU
	}
	kill := func(cause error) (guestEnd, error, time.Duration, error) {
		wall := time.Duration(0)
		if !start.IsZero() {
			wall = time.Since(start)
		}
		cpu := cpuUsed()
		w.kill()
		// Read before the cgroup goes with the worker.
		end := guestEnd{CPU: cpu, Peak: max(peak, s.mem.peak())}
		if s.mem.oomKilled() {
			cause = errMemory
		}
		s.p.discard(w)
		return end, cause, wall, nil
	}
	for {
		select {
		case m, ok := <-w.msgs:
			switch {
			case !ok && s.mem.oomKilled():
				// The kernel killed the worker at the cgroup's limit.
				return kill(errMemory)
			case !ok:
				s.p.discard(w) // reaps it: w.err is set
				return guestEnd{}, nil, 0, fmt.Errorf("the wasm worker died: %v: %s", w.err, w.stderr.String())
			case m.Started:
				start = time.Now()
				sched = fmt.Sprintf("/proc/%d/task/%d/schedstat", w.cmd.Process.Pid, m.Tid)
				t := time.NewTimer(ex.timeout)
				defer t.Stop()
				deadline = t.C
				// Without a CPU budget to watch, the tick only samples the
				// CPU time (see lastCPU).
				every := 100 * time.Millisecond
				if limited {
					every = cpuPoll(ex.cpu)
				}
				tk := time.NewTicker(every)
				defer tk.Stop()
				tick = tk.C
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
				end := *m.End
				end.Peak = max(end.Peak, s.mem.peak())
				s.p.put(w)
				return end, nil, wall, nil
			}
		case <-overflow:
			return kill(errOutput)
		case <-deadline:
			return kill(errTimeout)
		case <-tick:
			if used := cpuUsed(); limited && used >= ex.cpu {
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

// compileWorkers bounds the compile workers running at once: each may use
// a run's memory limit, and compiling is CPU-bound.
const compileWorkers = 2

// compile has a compile worker, a one-shot worker process of the compiler
// uid, compile the module at path into the cache and check it, under lim:
// its cgroup allows lim.memory (and workerSlack) above the fresh worker's
// own, and it is killed at lim.timeout. A module that takes more is
// reported as a *compileLimitError; this process never holds the module's
// code, nor the compiler's memory.
func (p *workerPool) compile(ctx context.Context, path string, lim compileLimits) (compiledInfo, error) {
	select {
	case p.compiling <- struct{}{}:
	case <-ctx.Done():
		return compiledInfo{}, ctx.Err()
	}
	defer func() { <-p.compiling }()
	w, err := p.spawn(ctx, -1, p.compilerUID())
	if err != nil {
		return compiledInfo{}, fmt.Errorf("start a compile worker: %w", err)
	}
	defer func() {
		w.kill()
		w.removeCgroup(p.log)
	}()
	mem, err := w.limit(lim.memory)
	if err != nil {
		return compiledInfo{}, err
	}
	if err := w.send(&toWorker{Compile: path}); err != nil {
		return compiledInfo{}, fmt.Errorf("send a module to its compile worker: %w", err)
	}
	t := time.NewTimer(lim.timeout)
	defer t.Stop()
	select {
	case m, ok := <-w.msgs:
		if ok && m.Compiled != nil {
			return *m.Compiled, nil
		}
		w.kill()
		if mem.oomKilled() {
			return compiledInfo{}, &compileLimitError{cause: errMemory, peak: mem.peak()}
		}
		return compiledInfo{}, fmt.Errorf("the compile worker died: %v: %s", w.err, w.stderr.String())
	case <-t.C:
		w.kill()
		return compiledInfo{}, &compileLimitError{cause: errTimeout, peak: mem.peak()}
	case <-ctx.Done():
		return compiledInfo{}, ctx.Err()
	}
}
