package session

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	_ "embed"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sandboxd/sandboxd/internal/admission"
	"github.com/sandboxd/sandboxd/internal/isolate"
	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/runtimes"
	"github.com/sandboxd/sandboxd/internal/workspace"
)

// kernel is how one runtime's kernel starts: its file is written to the
// workspace's reserved directory and run from there.
type kernel struct {
	file run.File
	argv []string
}

// kernelEnv is every session's environment besides its runtime's (the
// spec's variables win). HOME is the workspace, so what libraries cache
// under it (fontconfig's cache, built when matplotlib lists the fonts)
// goes to the workspace's reserved directory instead, out of the
// session's file listing, which shows the user's files only.
var kernelEnv = []string{"XDG_CACHE_HOME=" + workspace.Dir + "/" + workspace.ReservedDir + "/cache"}

// Config configures a Manager. Zero fields take the defaults noted.
type Config struct {
	// Runner is the process backend; nil (with RunnerErr saying why)
	// makes every Create fail with ErrUnavailable.
	Runner    *isolate.Runner
	RunnerErr error
	Runtimes  *runtimes.Registry
	// Defaults fill a session's unset limits; no session may pass
	// Ceiling. Timeout, CPUTime and Output apply to each cell.
	Defaults, Ceiling limits.Limits
	// CeilingOwner names who set Ceiling, in the error of a limit above
	// it (see limits.Limits.ValidateFor): empty for a daemon, or the
	// program that holds its sessions itself ("sandboxctl").
	CeilingOwner string
	// Memory, if set, is the daemon's memory budget: a session reserves
	// its memory limit from it for its whole life, and is refused at once
	// past it.
	Memory Reserver
	// MaxSessions caps the live sessions of the daemon (default 16),
	// MaxPerOwner those of one owner (one token; default 8).
	MaxSessions, MaxPerOwner int
	// IdleTimeout is a session's default idle timeout (10 minutes);
	// MaxIdleTimeout the longest a client may ask for (1 hour).
	IdleTimeout, MaxIdleTimeout time.Duration
	// CPUBudget is a session's default CPU budget for its whole life (10
	// minutes), MaxCPUBudget the most a client may ask for (1 hour): the
	// CPU every process of it uses, between cells too, past which it is
	// killed. Without it a background process spins for the session's
	// whole life for free.
	CPUBudget, MaxCPUBudget time.Duration
	// Gate, if set, admits every cell, as a daemon's runs are admitted by
	// theirs: a cell takes a slot of it while it runs, and past its queue
	// a cell is refused (admission.ErrQueueFull). nil admits every cell at
	// once (sandboxctl, which holds its sessions itself).
	Gate *admission.Gate
	// Prime has each kernel's prime (runtimes.Prime: matplotlib's font
	// list for Python) built once, in a sandbox, and given to every
	// session of it (its first plot is ~0.6 s faster).
	Prime bool
	// Ready is how many Python kernels are kept started ahead of the
	// sessions that will take them (ready.go); 0 keeps none.
	Ready int
	// Replica names this daemon in the ids of its sessions, so a router
	// can find the replica of a session (default: the host name).
	Replica string
	Logger  *slog.Logger
	// Now is the clock (tests inject one).
	Now func() time.Time
}

// Reserver promises memory; admission.Budget is one. Reserve grants n
// bytes to what ("this session") at once or fails saying why (an error of
// class exhausted); release gives them back, and calls after the first do
// nothing. Sessions take it as an interface, so that they stay testable
// without a daemon.
type Reserver interface {
	Reserve(n limits.Bytes, what string) (release func(), err error)
}

// Manager holds a daemon's sessions: it creates them, finds them by id
// for their owner, reaps the idle ones and closes all at the end.
type Manager struct {
	cfg  Config
	log  *slog.Logger
	life context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup

	primes primes
	// ready keeps the kernels started ahead; nil without Config.Ready.
	ready *readyPool

	mu       sync.Mutex
	sessions map[string]*Session
	// starting counts sessions being created, against the quotas.
	starting map[string]int
	// draining refuses new sessions (Drain); drained is closed once
	// draining and no session is left or starting.
	draining, drainDone bool
	drained             chan struct{}
	// started is when this Manager (this run of the replica) began;
	// ended remembers why the last sessions ended, so a client asking
	// for one hears why it is gone (Get).
	started time.Time
	ended   endedLog
}

// NewManager returns a Manager and starts its reaper; Close ends both.
// ctx bounds the life of every session: its end kills them.
func NewManager(ctx context.Context, cfg Config) *Manager {
	if cfg.Runtimes == nil {
		cfg.Runtimes = runtimes.Default()
	}
	if cfg.Defaults == (limits.Limits{}) {
		cfg.Defaults = limits.Defaults()
	}
	if cfg.Ceiling == (limits.Limits{}) {
		cfg.Ceiling = limits.DefaultCeiling()
	}
	if cfg.MaxSessions == 0 {
		cfg.MaxSessions = 16
	}
	if cfg.MaxPerOwner == 0 {
		cfg.MaxPerOwner = 8
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 10 * time.Minute
	}
	if cfg.MaxIdleTimeout == 0 {
		cfg.MaxIdleTimeout = time.Hour
	}
	if cfg.CPUBudget == 0 {
		cfg.CPUBudget = 10 * time.Minute
	}
	if cfg.MaxCPUBudget == 0 {
		cfg.MaxCPUBudget = time.Hour
	}
	if cfg.Replica == "" {
		h, _ := os.Hostname()
		cfg.Replica = h
	}
	cfg.Replica = replicaName(cfg.Replica)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m := &Manager{cfg: cfg, log: cfg.Logger, sessions: map[string]*Session{}, starting: map[string]int{}, drained: make(chan struct{}), started: cfg.Now()}
	// The sessions' life is the Manager's, not any request's.
	m.life, m.stop = context.WithCancel(ctx)
	m.wg.Add(1)
	go m.reap()
	if cfg.Ready > 0 && cfg.Runner != nil {
		m.ready = newReadyPool(m, cfg.Ready)
	}
	return m
}

// maxReplica is the longest replica name: a DNS label, so that a peer's
// address can be made from it (a StatefulSet's pod names are such labels).
const maxReplica = 63

// replicaName keeps what an id may carry: a DNS label of lower-case
// letters, digits and dashes, at most maxReplica long, neither starting
// nor ending with a dash.
func replicaName(s string) string {
	var b strings.Builder
	for _, c := range strings.ToLower(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-':
			b.WriteRune(c)
		case c == '.' || c == '_':
			b.WriteByte('-')
		}
	}
	name := strings.Trim(b.String(), "-")
	if len(name) > maxReplica {
		name = strings.TrimRight(name[:maxReplica], "-")
	}
	if name == "" {
		return "local"
	}
	return name
}

// validReplica reports whether s is a name replicaName could have made.
func validReplica(s string) bool {
	return s != "" && len(s) <= maxReplica && replicaName(s) == s
}

// newID is "<replica>-<26 random base32 characters>".
func (m *Manager) newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return m.cfg.Replica + "-" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
}

// Replica is the name this Manager puts in its session ids.
func (m *Manager) Replica() string { return m.cfg.Replica }

// plan is a checked session spec: its runtime, kernel, complete limits,
// environment, idle timeout and CPU budget.
type plan struct {
	rt     *runtimes.Runtime
	kernel kernel
	limits limits.Limits
	env    []string
	idle   time.Duration
	cpu    time.Duration
}

// span is one of a session's durations for its whole life: its JSON
// name, the spec's value, the server's default and the range allowed.
type span struct {
	name          string
	v             limits.Duration
	def, min, max time.Duration
}

// resolve is the span's value (the default when unset) or an error
// naming the field and the range.
func (d span) resolve() (time.Duration, error) {
	v := d.v.Std()
	switch {
	case v == 0:
		return min(d.def, d.max), nil
	case v < d.min || v > d.max:
		return 0, fmt.Errorf("%w: %s %s: must be between %s and %s", ErrInvalid, d.name, d.v, limits.Duration(d.min), limits.Duration(d.max))
	}
	return v, nil
}

// check validates spec and resolves what it leaves open.
func (m *Manager) check(spec *run.SessionSpec) (*plan, error) {
	name := spec.Runtime
	if name == "" {
		name = "python"
	}
	rt, err := m.cfg.Runtimes.Lookup(name)
	if err != nil {
		return nil, err
	}
	if rt.Kernel == nil {
		return nil, fmt.Errorf("%w: runtime %q has no session kernel; sessions run %s", ErrInvalid, rt.Name, m.kernelNames())
	}
	p := &plan{rt: rt, kernel: kernel{file: rt.Kernel.File(), argv: rt.Kernel.Argv(rt)}}
	p.limits = spec.Limits.Merge(m.cfg.Defaults)
	if err := p.limits.ValidateFor(m.cfg.Ceiling, m.cfg.CeilingOwner); err != nil {
		return nil, err
	}
	if p.idle, err = (span{"idle_timeout", spec.IdleTimeout, m.cfg.IdleTimeout, time.Second, m.cfg.MaxIdleTimeout}).resolve(); err != nil {
		return nil, err
	}
	if p.cpu, err = (span{"cpu_budget", spec.CPUBudget, m.cfg.CPUBudget, time.Second, m.cfg.MaxCPUBudget}).resolve(); err != nil {
		return nil, err
	}
	if err := workspace.CheckFiles(spec.Files); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	p.env, err = runtimes.BuildEnv(slices.Concat(rt.Env, runtimes.ThreadEnv(p.limits.CPUs), kernelEnv), spec.Env)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return p, nil
}

// kernelNames lists the runtimes that have a session kernel.
func (m *Manager) kernelNames() string {
	return strings.Join(m.cfg.Runtimes.Names(func(rt *runtimes.Runtime) bool { return rt.Kernel != nil }), ", ")
}

// Check validates a spec without starting a session.
func (m *Manager) Check(spec *run.SessionSpec) error {
	_, err := m.check(spec)
	return err
}

// Create starts a session for owner. ctx bounds the start only.
func (m *Manager) Create(ctx context.Context, owner string, spec *run.SessionSpec) (*Session, error) {
	p, err := m.check(spec)
	if err != nil {
		return nil, err
	}
	rt, env := p.rt, p.env
	if m.cfg.Runner == nil {
		return nil, fmt.Errorf("%w: sessions need the process backend: %w", ErrUnavailable, m.cfg.RunnerErr)
	}
	if !m.cfg.Runtimes.Available(rt) {
		return nil, fmt.Errorf("%w: runtime %q is not installed on this host (%s is missing)", ErrUnavailable, rt.Name, rt.Binary)
	}
	if err := m.reserve(owner); err != nil {
		return nil, err
	}
	defer m.release(owner)
	env, internal := m.kernelFiles(p, spec.Env, false)
	k := m.ready.take(rt, p.limits, env, len(internal) > 1)
	if k != nil && !m.relimit(k, p.limits, p.cpu) {
		k = nil
	}
	if k != nil {
		// The session reserves its own limit in its place.
		k.unreserve()
	}
	unreserve, err := m.reserveMemory(p.limits.Memory)
	// Kernels kept ahead give way to a session the budget has no room for.
	for err != nil && m.ready.evict() {
		unreserve, err = m.reserveMemory(p.limits.Memory)
	}
	if err != nil {
		if k != nil {
			_ = k.discard()
		}
		return nil, err
	}
	now := m.cfg.Now()
	s := &Session{
		id: m.newID(), owner: owner, tenant: admission.Tenant(ctx), runtime: rt.Name, limits: p.limits, maxTimeout: m.cfg.Ceiling.Timeout.Std(), idle: p.idle, cpuBudget: p.cpu,
		created: now, lastUsed: now, now: m.cfg.Now, log: m.log, gate: m.cfg.Gate, state: run.SessionIdle, turn: make(chan struct{}, 1),
		unreserve: unreserve,
	}
	if k != nil {
		err = s.adopt(ctx, m.life, k, env, spec.Files)
	} else {
		err = start(ctx, m.life, m.cfg.Runner, p.kernel, s, env, spec.Files, internal)
	}
	if err != nil {
		s.unreserve()
		return nil, err
	}
	m.mu.Lock()
	closed := m.sessions == nil
	if !closed {
		m.sessions[s.id] = s
	}
	m.mu.Unlock()
	if closed {
		_ = s.close()
		return nil, fmt.Errorf("%w: the daemon is shutting down", ErrUnavailable)
	}
	m.log.Info("session created", "session", s.id, "run", s.ws.ID(), "runtime", rt.Name, "version", s.version, "ahead", s.ahead)
	return s, nil
}

// kernelFiles are the environment of a session's kernel and the files
// written to its reserved directory: the kernel, and its runtime's prime
// unless the spec's own env names the prime's directory (if it is built;
// wait waits for its build).
func (m *Manager) kernelFiles(p *plan, user map[string]string, wait bool) ([]string, []run.File) {
	env, internal := slices.Clone(p.env), []run.File{p.kernel.file}
	get := m.primes.get
	if wait {
		get = m.primes.wait
	}
	if pr := p.rt.Kernel.Prime; pr != nil && m.cfg.Prime && user[pr.DirEnv] == "" {
		if f := get(m.life, &m.wg, m.cfg.Runner, p.rt); f != nil {
			internal = append(internal, *f)
			env = append(env, pr.DirEnv+"="+path.Join(workspace.Dir, pr.Dir))
		}
	}
	return env, internal
}

// reserve takes a place in the quotas for a session being created.
func (m *Manager) reserve(owner string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sessions == nil {
		return fmt.Errorf("%w: the daemon is shutting down", ErrUnavailable)
	}
	if m.draining {
		return fmt.Errorf("%w: replica %q is draining before it stops and takes no new session; ask again and another replica will take it", ErrDraining, m.cfg.Replica)
	}
	total, mine := 0, m.starting[owner]
	for _, n := range m.starting {
		total += n
	}
	total += len(m.sessions)
	for _, s := range m.sessions {
		if s.owner == owner {
			mine++
		}
	}
	if total >= m.cfg.MaxSessions {
		return fmt.Errorf("%w: this daemon holds its maximum of %d sessions; delete one first", ErrTooMany, m.cfg.MaxSessions)
	}
	if mine >= m.cfg.MaxPerOwner {
		return fmt.Errorf("%w: you hold the maximum of %d sessions per token; delete one first", ErrTooMany, m.cfg.MaxPerOwner)
	}
	m.starting[owner]++
	return nil
}

// reserveMemory reserves a session's memory limit from the budget, if
// there is one, and returns its release (safe to call more than once).
func (m *Manager) reserveMemory(n limits.Bytes) (func(), error) {
	if m.cfg.Memory == nil {
		return func() {}, nil
	}
	release, err := m.cfg.Memory.Reserve(n, "this session")
	if err != nil {
		return nil, err
	}
	return sync.OnceFunc(release), nil
}

func (m *Manager) release(owner string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.starting[owner]--; m.starting[owner] <= 0 {
		delete(m.starting, owner)
	}
	m.checkDrainedLocked()
}

// Drain makes the Manager refuse new sessions (ErrDraining) while those
// it holds go on serving: a replica being removed stops taking work but
// lets its sessions end. The channel it returns is closed once no session
// is left or starting (each deleted, expired, or removed at Close). It
// may be called more than once.
func (m *Manager) Drain() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.draining {
		m.draining = true
		m.log.Info("draining: no new sessions", "sessions", len(m.sessions))
		// No session will take them.
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			if err := m.ready.stop(); err != nil {
				m.log.Error("discard the ready session kernels", "err", err)
			}
		}()
	}
	m.checkDrainedLocked()
	return m.drained
}

// Draining reports whether Drain was called (for readiness).
func (m *Manager) Draining() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.draining
}

// checkDrainedLocked closes drained once draining and empty. m.mu is held.
func (m *Manager) checkDrainedLocked() {
	if m.draining && !m.drainDone && len(m.sessions) == 0 && len(m.starting) == 0 {
		m.drainDone = true
		close(m.drained)
	}
}

// Get returns owner's session id. Another owner's session is not found,
// as a missing one is; an id of another replica says which. A session of
// owner's that ended says when and why; an id of this replica that it
// did not hold for owner was made by an earlier run of it (ids are
// random), and the error says so: sessions end when their replica stops.
func (m *Manager) Get(owner, id string) (*Session, error) {
	m.mu.Lock()
	s := m.sessions[id]
	e, ended := m.ended.get(id)
	m.mu.Unlock()
	if s != nil && s.owner == owner {
		return s, nil
	}
	r := ReplicaOf(id)
	switch {
	case r != "" && r != m.cfg.Replica:
		return nil, &ElsewhereError{ID: id, Replica: r, Here: m.cfg.Replica}
	case ended && e.owner == owner:
		return nil, fmt.Errorf("%w: session %s ended at %s: %s", ErrNotFound, run.Quote(id, run.MaxName), e.at.UTC().Format(time.RFC3339), e.why)
	case r == m.cfg.Replica:
		// The same words for another owner's session, live or ended, as
		// for one that never was: they are true of all three, and say
		// nothing of what others hold.
		return nil, fmt.Errorf("%w: no session %s: replica %q has held no such session of yours since it started at %s; it ended before that (a session ends when its replica stops or restarts), or it never existed", ErrNotFound, run.Quote(id, run.MaxName), r, m.started.UTC().Format(time.RFC3339))
	}
	return nil, fmt.Errorf("%w: no session %s (it may have expired)", ErrNotFound, run.Quote(id, run.MaxName))
}

// endedKept is how many ended sessions a Manager remembers the reason of.
const endedKept = 4096

// endedSession is why and when a session ended, and whose it was (only
// its owner hears it).
type endedSession struct {
	owner, why string
	at         time.Time
}

// endedLog remembers the last endedKept ended sessions, oldest forgotten
// first. Its zero value is empty; the Manager's mu guards it.
type endedLog struct {
	byID  map[string]endedSession
	order []string // ring of ids, next at order[next]
	next  int
}

func (l *endedLog) add(id string, e endedSession) {
	if l.byID == nil {
		l.byID = make(map[string]endedSession)
		l.order = make([]string, 0, 64)
	}
	if len(l.order) < endedKept {
		l.order = append(l.order, id)
	} else {
		delete(l.byID, l.order[l.next])
		l.order[l.next] = id
		l.next = (l.next + 1) % endedKept
	}
	l.byID[id] = e
}

func (l *endedLog) get(id string) (endedSession, bool) {
	e, ok := l.byID[id]
	return e, ok
}

// ElsewhereError: the session id names another replica.
type ElsewhereError struct{ ID, Replica, Here string }

func (e *ElsewhereError) Error() string {
	return fmt.Sprintf("session %q lives on replica %q, not on this one (%q): send its requests there", e.ID, e.Replica, e.Here)
}

// Unwrap makes an ElsewhereError an ErrNotFound (of class not found).
func (e *ElsewhereError) Unwrap() error { return ErrNotFound }

// idRandom is the length of an id's random part.
const idRandom = 26

// ReplicaOf is the replica part of a session id, or "" when id is not
// shaped as one (a made-up id is not found, not "elsewhere"). The name it
// returns is a DNS label (validReplica) whatever the client sent: a
// forwarder builds a peer's address from it.
func ReplicaOf(id string) string {
	i := strings.LastIndexByte(id, '-')
	if i <= 0 || len(id)-i-1 != idRandom || !validReplica(id[:i]) {
		return ""
	}
	for _, c := range id[i+1:] {
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return ""
		}
	}
	return id[:i]
}

// Delete closes owner's session id and removes everything of it.
func (m *Manager) Delete(owner, id string) error {
	s, err := m.Get(owner, id)
	if err != nil {
		return err
	}
	return m.remove(s, "deleted")
}

func (m *Manager) remove(s *Session, why string) error {
	m.mu.Lock()
	if m.sessions[s.id] != s {
		m.mu.Unlock()
		return fmt.Errorf("%w: session %q is already gone", ErrNotFound, s.id)
	}
	delete(m.sessions, s.id)
	m.ended.add(s.id, endedSession{owner: s.owner, why: why, at: m.cfg.Now()})
	m.checkDrainedLocked()
	m.mu.Unlock()
	err := s.close()
	m.log.Info("session closed", "session", s.id, "run", s.ws.ID(), "why", why, "cells", s.Info().Cells)
	if err != nil {
		m.log.Error("remove session", "session", s.id, "err", err)
	}
	return err
}

// List returns owner's sessions, oldest first.
func (m *Manager) List(owner string) []run.SessionInfo {
	m.mu.Lock()
	var out []run.SessionInfo
	for _, s := range m.sessions {
		if s.owner == owner {
			out = append(out, s.Info())
		}
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	if out == nil {
		out = []run.SessionInfo{}
	}
	return out
}

// Count is the number of live sessions (for metrics).
func (m *Manager) Count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.sessions)
}

// Ready is the number of kernels kept started ahead now (ready.go).
func (m *Manager) Ready() int { return m.ready.len() }

// reapEvery is how often idle sessions are looked for.
const reapEvery = time.Second

// reap closes sessions idle past their timeout until the Manager closes.
func (m *Manager) reap() {
	defer m.wg.Done()
	t := time.NewTicker(reapEvery)
	defer t.Stop()
	for {
		select {
		case <-m.life.Done():
			return
		case <-t.C:
			m.ReapNow()
		}
	}
}

// ReapNow closes the sessions idle past their timeout.
func (m *Manager) ReapNow() {
	now := m.cfg.Now()
	m.mu.Lock()
	var idle []*Session
	for _, s := range m.sessions {
		if s.expired(now) {
			idle = append(idle, s)
		}
	}
	m.mu.Unlock()
	for _, s := range idle {
		_ = m.remove(s, "idle timeout")
	}
}

// Close closes every session and stops the reaper. Creates after it fail.
func (m *Manager) Close() error {
	m.mu.Lock()
	all := m.sessions
	m.sessions = nil
	m.mu.Unlock()
	m.stop()
	m.wg.Wait()
	errs := []error{m.ready.stop()}
	for _, s := range all {
		errs = append(errs, s.close())
	}
	return errors.Join(errs...)
}

// Owner is the owner of a request's sessions, from its Authorization
// header (already checked by the API): see TokenOwner; "anonymous"
// without a bearer token.
func Owner(authorization string) string {
	scheme, token, _ := strings.Cut(authorization, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return TokenOwner("")
	}
	return TokenOwner(token)
}

// TokenOwner is the owner of the sessions of a request that carried token
// (already checked by the API): a digest of it, so sessions are per token
// and no token is kept in memory twice; "anonymous" for "".
func TokenOwner(token string) string {
	token = strings.TrimSpace(token)
	if token == "" {
		return "anonymous"
	}
	sum := sha256.Sum256([]byte(token))
	return "token-" + hex.EncodeToString(sum[:8])
}
