package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sandboxd/sandboxd/internal/admission"
	"github.com/sandboxd/sandboxd/internal/isolate"
	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/runtimes"
)

// Ready kernels: the Manager keeps Config.Ready Python kernels started
// ahead, each in a sandbox and workspace of its own that no session has
// used, at the least CPU weight, its memory reserved from the daemon's
// budget. A Create that one can serve takes it instead of starting a
// kernel: its limits are applied then (Relimit), its environment given
// (the env request of kernel/PROTOCOL.md), and its files placed, as a
// fresh kernel's would be. A spec that a ready kernel cannot serve exactly
// as a fresh start would starts cold: another runtime, another tmpfs size
// (a mount option), another prime, or an environment that acts at the
// interpreter's start-up (startupEnv). RATIONALE's "Sessions" says why
// nothing passes from one tenant to the next.

// readyRuntime is the runtime whose kernels are started ahead: most
// sessions are Python's, and only its kernel takes the env request.
const readyRuntime = "python"

// startupEnv are the variables read once, at start-up, by the dynamic
// loader, the C library or the interpreter, besides the runtime's own
// (runtimes.Program.StartEnv: PYTHON*): a kernel past its start-up
// cannot take another value of them, so a spec that changes one starts
// cold. Each is a prefix of names.
var startupEnv = []string{
	"LD_",     // the dynamic loader: LD_PRELOAD, LD_LIBRARY_PATH
	"GLIBC_",  // GLIBC_TUNABLES, read by the C library at start
	"MALLOC_", // malloc's settings, read at its first use
	"LANG",    // the locale (LANG, LANGUAGE): Python's file system and stdio encodings
	"LC_",     // the same
	"TZ",      // read when the time functions first run
	"HOME",    // site.py adds the user's site-packages under it at start
}

// readyKernel is a kernel up in its sandbox, ready, that no session has
// used.
type readyKernel struct {
	ws      *isolate.Workspace
	proc    *isolate.SessionProcess
	answers chan answer
	ansErr  *error
	version string
	// limits are the session limits it was started for, env its
	// environment, primed whether it was given the runtime's prime.
	limits limits.Limits
	env    []string
	primed bool
	// unreserve gives its memory back to the budget (once).
	unreserve func()
}

// discard kills the kernel and removes its sandbox and workspace.
func (k *readyKernel) discard() error {
	k.proc.Kill()
	_, _ = k.proc.Wait()
	err := k.ws.Close()
	k.unreserve()
	return err
}

// readyPool keeps a Manager's ready kernels.
type readyPool struct {
	m    *Manager
	want int
	// kick wakes the filler (a take, a failed start to retry).
	kick chan struct{}

	mu      sync.Mutex
	kernels []*readyKernel
	// stopped: no kernel is kept any more (Close, Drain).
	stopped bool
}

// readyRetry is how long the filler waits after a start failed or the
// budget had no room, before it tries again.
const readyRetry = time.Second

// newReadyPool starts the filler of a pool of n kernels.
func newReadyPool(m *Manager, n int) *readyPool {
	p := &readyPool{m: m, want: n, kick: make(chan struct{}, 1)}
	m.wg.Add(1)
	go p.fill()
	return p
}

// fill starts kernels, one at a time, while the pool has fewer than it
// wants, until the Manager's life ends.
func (p *readyPool) fill() {
	defer p.m.wg.Done()
	for {
		for p.short() {
			k, err := p.m.startReady(p.m.life)
			if err != nil {
				if p.m.life.Err() == nil && !errors.Is(err, ErrTooMany) && !errors.Is(err, admission.ErrOverBudget) {
					p.m.log.Warn("start a ready session kernel", "err", err)
				}
				break
			}
			if !p.add(k) {
				_ = k.discard()
				return
			}
		}
		select {
		case <-p.m.life.Done():
			return
		case <-p.kick:
		case <-time.After(readyRetry):
		}
	}
}

func (p *readyPool) short() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.stopped && len(p.kernels) < p.want && p.m.life.Err() == nil
}

// add keeps k, or returns false once the pool has stopped.
func (p *readyPool) add(k *readyKernel) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return false
	}
	p.kernels = append(p.kernels, k)
	return true
}

// take removes and returns a live kernel that serves a session of rt with
// limits l, environment env and the prime or not, or nil.
func (p *readyPool) take(rt *runtimes.Runtime, l limits.Limits, env []string, primed bool) *readyKernel {
	if p == nil || rt.Name != readyRuntime {
		return nil
	}
	p.mu.Lock()
	var k *readyKernel
	var dead []*readyKernel
	defer func() {
		for _, d := range dead {
			_ = d.discard()
		}
	}()
	for i := len(p.kernels) - 1; i >= 0; i-- {
		c := p.kernels[i]
		select {
		case <-c.proc.Done():
			// Dead while it waited (killed from outside): dropped.
			p.kernels = slices.Delete(p.kernels, i, i+1)
			dead = append(dead, c)
			continue
		default:
		}
		if c.serves(rt, l, env, primed) {
			k = c
			p.kernels = slices.Delete(p.kernels, i, i+1)
			break
		}
	}
	p.mu.Unlock()
	p.wake()
	return k
}

// serves reports whether k can be a fresh session of rt with limits l,
// environment env, and the prime or not.
func (k *readyKernel) serves(rt *runtimes.Runtime, l limits.Limits, env []string, primed bool) bool {
	if l.Tmpfs != k.limits.Tmpfs || primed != k.primed {
		return false
	}
	for _, name := range changedNames(k.env, env) {
		if startsUp(rt, name) {
			return false
		}
	}
	return true
}

// changedNames are the names whose value differs between environments a
// and b, or that only one of them has.
func changedNames(a, b []string) []string {
	am, bm := envMap(a), envMap(b)
	var out []string
	for k, v := range am {
		if w, ok := bm[k]; !ok || w != v {
			out = append(out, k)
		}
	}
	for k := range bm {
		if _, ok := am[k]; !ok {
			out = append(out, k)
		}
	}
	return out
}

// startsUp reports whether name is read at start-up (startupEnv, rt's
// kernel's StartEnv).
func startsUp(rt *runtimes.Runtime, name string) bool {
	for _, pre := range slices.Concat(startupEnv, rt.Kernel.StartEnv) {
		if strings.HasPrefix(name, pre) {
			return true
		}
	}
	return false
}

func envMap(env []string) map[string]string {
	m := make(map[string]string, len(env))
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

func (p *readyPool) wake() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// evict discards one kernel to give its memory back, for a session the
// budget has no room for; false when none was left.
func (p *readyPool) evict() bool {
	if p == nil {
		return false
	}
	p.mu.Lock()
	if len(p.kernels) == 0 {
		p.mu.Unlock()
		return false
	}
	k := p.kernels[0]
	p.kernels = p.kernels[1:]
	p.mu.Unlock()
	if err := k.discard(); err != nil {
		p.m.log.Error("discard a ready session kernel", "run", k.ws.ID(), "err", err)
	}
	return true
}

// len is the number of kernels kept.
func (p *readyPool) len() int {
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.kernels)
}

// stop discards every kernel and keeps none from now on.
func (p *readyPool) stop() error {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	ks := p.kernels
	p.kernels, p.stopped = nil, true
	p.mu.Unlock()
	var errs []error
	for _, k := range ks {
		errs = append(errs, k.discard())
	}
	return errors.Join(errs...)
}

// budgetRoom is a Reserver that says what it has promised of its limit
// (admission.Budget does).
type budgetRoom interface {
	Limit() limits.Bytes
	Promised() limits.Bytes
}

// startReady starts a kernel for a session of the default spec, its
// memory reserved from the budget. ctx bounds its life until taken.
func (m *Manager) startReady(ctx context.Context) (k *readyKernel, err error) {
	p, err := m.check(&run.SessionSpec{Runtime: readyRuntime})
	if err != nil {
		return nil, err
	}
	if m.cfg.Runner == nil || !m.cfg.Runtimes.Available(p.rt) {
		return nil, fmt.Errorf("%w: no process backend or no %s", ErrUnavailable, p.rt.Binary)
	}
	// After the prime's build: sessions created from then on have it.
	env, internal := m.kernelFiles(p, nil, true)
	unreserve := func() {}
	if r, ok := m.cfg.Memory.(budgetRoom); ok && r.Promised()+p.limits.Memory > r.Limit() {
		// Not a refusal the metrics should count: nobody asked.
		return nil, fmt.Errorf("%w: no room in the memory budget for a ready session kernel", ErrTooMany)
	}
	if m.cfg.Memory != nil {
		if unreserve, err = m.cfg.Memory.Reserve(p.limits.Memory, "a ready session kernel"); err != nil {
			return nil, err
		}
		unreserve = sync.OnceFunc(unreserve)
	}
	defer func() {
		if err != nil {
			unreserve()
		}
	}()
	ws, err := m.cfg.Runner.NewWorkspace(p.limits.Tmpfs)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, ws.Close())
		}
	}()
	for _, f := range internal {
		if err := ws.WriteInternal(f); err != nil {
			return nil, err
		}
	}
	startCtx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	// ctx, not startCtx: the kernel lives on, waiting, after the start.
	proc, err := m.cfg.Runner.StartSessionAhead(ctx, ws, isolate.Exec{Argv: p.kernel.argv, Env: env, Limits: kernelLimits(p.limits, p.cpu)})
	if err != nil {
		return nil, err
	}
	k = &readyKernel{ws: ws, proc: proc, answers: make(chan answer, 1), ansErr: new(error), limits: p.limits, env: env, primed: len(internal) > 1, unreserve: unreserve}
	go readAnswers(proc.Answers(), k.answers, k.ansErr)
	if k.version, err = awaitReady(startCtx, k.answers); err != nil {
		proc.Kill()
		res, _ := proc.Wait()
		return nil, fmt.Errorf("start the %s kernel: %w%s", p.rt.Name, err, stderrTail(res))
	}
	return k, nil
}

// relimit gives k a session's limits l and CPU budget, or discards it
// (a limit below what it already uses) and returns false: the session
// starts cold.
func (m *Manager) relimit(k *readyKernel, l limits.Limits, budget time.Duration) bool {
	err := k.proc.Relimit(kernelLimits(l, budget))
	if err == nil {
		return true
	}
	m.log.Info("a ready session kernel cannot take the session's limits; it starts cold", "err", err)
	if err := k.discard(); err != nil {
		m.log.Error("discard a ready session kernel", "run", k.ws.ID(), "err", err)
	}
	return false
}

// adopt makes k, relimited, the session's kernel: its clock started, its environment given, its files placed. On error k is
// gone, its workspace too.
func (s *Session) adopt(ctx, life context.Context, k *readyKernel, env []string, files []run.File) (err error) {
	s.ws, s.proc, s.answers, s.ansErr, s.version, s.ahead = k.ws, k.proc, k.answers, k.ansErr, k.version, true
	life, s.cancel = context.WithCancel(life)
	defer func() {
		if err != nil {
			s.kill()
			_, _ = s.proc.Wait()
			err = errors.Join(err, s.free())
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	if err := k.proc.Activate(life); err != nil {
		return err
	}
	// Started ahead at the least weight: from here it works for the
	// session's tenant, until begin.
	if err := k.proc.Busy(s.tenant); err != nil {
		return err
	}
	if !slices.Equal(env, k.env) {
		if err := s.setEnv(ctx, env); err != nil {
			return fmt.Errorf("give the %s kernel its environment: %w", s.runtime, err)
		}
	}
	return s.begin(ctx, files)
}

// envRequest gives a kernel started ahead its session's environment.
type envRequest struct {
	ID  string            `json:"id"`
	Env map[string]string `json:"env"`
}

// setEnv replaces the kernel's environment by env (the env request).
func (s *Session) setEnv(ctx context.Context, env []string) error {
	line, err := json.Marshal(envRequest{ID: "env", Env: envMap(env)})
	if err != nil {
		return err
	}
	if err := s.send(append(line, '\n'), startTimeout); err != nil {
		return err
	}
	select {
	case a, ok := <-s.answers:
		if ok && a.Type == "done" && a.ID == "env" && a.Status == "ok" {
			return nil
		}
		return fmt.Errorf("%w: the kernel did not take the environment", errProtocol)
	case <-ctx.Done():
		return ctx.Err()
	}
}
