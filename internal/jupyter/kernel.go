package jupyter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/sandboxd/sandboxd/internal/admission"
	"github.com/sandboxd/sandboxd/internal/errdefs"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/session"
)

// A kernel is one session seen through Jupyter's protocol. Its execute
// requests run one at a time, in the order they came, by its worker
// (work); everything else is answered at once by the connection that
// read it. Restart swaps the session for a fresh one under the same id.
type kernel struct {
	g       *Gateway
	id      string
	owner   string
	spec    *spec
	started time.Time

	// jobs are the execute requests waiting for the worker.
	jobs chan *job
	// done is closed when the kernel is shut down.
	done     chan struct{}
	shutOnce sync.Once
	// turn is held by the worker while it runs a cell, and by a restart
	// while it swaps the session: a cell never runs on a session being
	// replaced.
	turn sync.Mutex
	// status orders the iopub status messages: a request answered
	// between two of a cell's does not announce "idle" while it runs.
	status sync.Mutex

	mu           sync.Mutex
	sess         *session.Session
	ksession     string // the header.session of the kernel's messages
	count        int    // execution count of the current session
	running      *job
	queued       int // bytes of code in jobs
	restarting   bool
	lastActivity time.Time
	conns        map[*conn]struct{}
}

// job is one execute request.
type job struct {
	msg     *message
	conn    *conn
	req     executeRequest
	started time.Time
	done    chan struct{} // closed when the cell ended
}

// executeRequest is execute_request's content. store_history and
// stop_on_error default to true, as the protocol says. allow_stdin is not
// read: no cell can ask for input (see pythonPrelude).
type executeRequest struct {
	Code         string `json:"code"`
	Silent       bool   `json:"silent"`
	StoreHistory *bool  `json:"store_history"`
	StopOnError  *bool  `json:"stop_on_error"`
}

func orTrue(b *bool) bool { return b == nil || *b }

func newKernel(g *Gateway, id, owner string, s *spec) *kernel {
	now := g.cfg.Now()
	return &kernel{
		g: g, id: id, owner: owner, spec: s, started: now, lastActivity: now,
		jobs: make(chan *job, session.MaxWaitingCells), done: make(chan struct{}), conns: map[*conn]struct{}{},
	}
}

// boot starts a session for the kernel and runs the spec's prelude in
// it; on success it is the kernel's session, with a fresh count.
func (k *kernel) boot(ctx context.Context) error {
	m := k.g.cfg.Sessions
	sess, err := m.Create(ctx, k.owner, &run.SessionSpec{Runtime: k.spec.runtime})
	if err != nil {
		return fmt.Errorf("start a %s kernel: %w", k.spec.name, err)
	}
	if k.spec.prelude != "" {
		res, err := sess.Exec(ctx, run.CellRequest{Code: k.spec.prelude}, run.CellStream{})
		if err == nil && res.Status != run.StatusOK {
			err = fmt.Errorf("%w: the kernel's prelude failed: %s %s", errdefs.ErrInternal, res.Status, res.Reason)
		}
		if err != nil {
			_ = m.Delete(k.owner, sess.ID())
			return fmt.Errorf("start a %s kernel: %w", k.spec.name, err)
		}
	}
	k.mu.Lock()
	select {
	case <-k.done:
		// Shut down while this session started (a restart): shutdown
		// deleted the one before it, so this one is deleted here.
		k.mu.Unlock()
		_ = m.Delete(k.owner, sess.ID())
		return fmt.Errorf("%w: kernel %s was shut down", errdefs.ErrNotFound, k.id)
	default:
	}
	k.sess, k.ksession, k.count = sess, newUUID(), 0
	k.lastActivity = k.g.cfg.Now()
	k.mu.Unlock()
	return nil
}

func (k *kernel) session() *session.Session {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.sess
}

func (k *kernel) sessionID() string { return k.session().ID() }

// expired reports whether the kernel's session is gone (its idle timeout
// passed, or it was deleted through the session API).
func (k *kernel) expired() bool {
	k.mu.Lock()
	sess, restarting := k.sess, k.restarting
	k.mu.Unlock()
	if restarting {
		return false
	}
	_, err := k.g.cfg.Sessions.Get(k.owner, sess.ID())
	return err != nil
}

// state is the kernel's execution_state.
func (k *kernel) state() string {
	k.mu.Lock()
	sess, restarting, running := k.sess, k.restarting, k.running
	k.mu.Unlock()
	switch {
	case restarting:
		return "restarting"
	case sess.Info().State == run.SessionDead:
		return "dead"
	case running != nil:
		return "busy"
	}
	return "idle"
}

func (k *kernel) model() kernelModel {
	state := k.state()
	k.mu.Lock()
	defer k.mu.Unlock()
	return kernelModel{ID: k.id, Name: k.spec.name, LastActivity: isoTime(k.lastActivity), ExecutionState: state, Connections: len(k.conns)}
}

// touch keeps the session from expiring while a client is connected: a
// notebook left open keeps its kernel, as Jupyter's do.
func (k *kernel) touch() { k.session().Touch() }

// attach adds a connection to those that hear the kernel's iopub; false
// when the kernel is shut down.
func (k *kernel) attach(c *conn) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	select {
	case <-k.done:
		return false
	default:
	}
	k.conns[c] = struct{}{}
	return true
}

func (k *kernel) detach(c *conn) {
	k.mu.Lock()
	delete(k.conns, c)
	k.mu.Unlock()
}

// shutdown ends the kernel: its worker stops, its connections are closed
// and its session is deleted (which ends a running cell).
func (k *kernel) shutdown(why string) {
	k.shutOnce.Do(func() {
		k.mu.Lock()
		close(k.done)
		conns := make([]*conn, 0, len(k.conns))
		for c := range k.conns {
			conns = append(conns, c)
		}
		sess := k.sess
		k.mu.Unlock()
		for _, c := range conns {
			c.shut(why)
		}
		if err := k.g.cfg.Sessions.Delete(k.owner, sess.ID()); err != nil && !errdefs.Is(err, errdefs.ErrNotFound) {
			k.g.log.Error("delete a kernel's session", "kernel", k.id, "session", sess.ID(), "err", err)
		}
	})
}

// enqueue queues an execute request for the worker, or answers it with
// an error when too many cells, or too much code, already wait.
func (k *kernel) enqueue(c *conn, m *message) {
	var req executeRequest
	if err := json.Unmarshal(m.Content, &req); err != nil {
		k.reply(c, m, "execute_reply", replyError("BadRequest", "execute_request's content: "+err.Error(), nil, 0))
		return
	}
	j := &job{msg: m, conn: c, req: req, done: make(chan struct{})}
	k.mu.Lock()
	full := k.queued > 0 && k.queued+len(req.Code) > session.MaxWaitingCodeBytes
	if !full {
		select {
		case k.jobs <- j:
			k.queued += len(req.Code)
		default:
			full = true
		}
	}
	count := k.count
	k.mu.Unlock()
	if full {
		msg := fmt.Sprintf("%d cells or %d bytes of code already wait for this kernel; send the next when one ends", session.MaxWaitingCells, session.MaxWaitingCodeBytes)
		k.publishStatus(m, "busy", true)
		k.publish(m, "error", errorContent("CellQueueFull", msg, nil))
		k.reply(c, m, "execute_reply", replyError("CellQueueFull", msg, nil, count))
		k.publishStatus(m, "idle", true)
	}
}

// work runs the queued cells until the kernel is shut down.
func (k *kernel) work() {
	defer k.g.wg.Done()
	for {
		select {
		case <-k.done:
			return
		case j := <-k.jobs:
			k.turn.Lock()
			k.execute(j)
			k.turn.Unlock()
		}
	}
}

// execute runs one cell and tells its story on iopub as a kernel does:
// status busy, execute_input, the cell's streams and displays as they
// come, execute_result or error; then execute_reply to the client that
// asked, and status idle.
func (k *kernel) execute(j *job) {
	req := j.req
	k.status.Lock()
	k.mu.Lock()
	k.queued -= len(req.Code)
	if !req.Silent && orTrue(req.StoreHistory) {
		k.count++
	}
	count, sess := k.count, k.sess
	j.started = k.g.cfg.Now()
	k.running, k.lastActivity = j, j.started
	k.mu.Unlock()
	k.publish(j.msg, "status", map[string]string{"execution_state": "busy"})
	k.status.Unlock()
	if !req.Silent {
		k.publish(j.msg, "execute_input", map[string]any{"code": req.Code, "execution_count": count})
	}
	out, errOut := k.stream(j.msg, "stdout", req.Silent), k.stream(j.msg, "stderr", req.Silent)
	live := run.CellStream{Stdout: out, Stderr: errOut}
	if !req.Silent {
		live.Display = func(b run.MIMEBundle) {
			k.publish(j.msg, "display_data", map[string]any{"data": b, "metadata": map[string]any{}, "transient": map[string]any{}})
		}
	}
	// The cell is admitted for the kernel's owner, as a session's cell
	// sent over HTTP is for its token (admission.WithTenant).
	res, err := k.g.cfg.Exec(admission.WithTenant(k.g.life, k.owner), sess, run.CellRequest{Code: req.Code}, live)
	out.flush()
	errOut.flush()
	close(j.done)
	reply := k.outcome(j, count, res, err)
	// The cells waiting when this one failed are aborted (stop_on_error),
	// and only those: they are taken before the reply and its idle
	// status, after which a client may send its next cell.
	var aborted []*job
	if reply["status"] == "error" && orTrue(req.StopOnError) {
		aborted = k.drain()
	}
	k.reply(j.conn, j.msg, "execute_reply", reply)
	k.status.Lock()
	k.mu.Lock()
	k.running, k.lastActivity = nil, k.g.cfg.Now()
	k.mu.Unlock()
	k.publish(j.msg, "status", map[string]string{"execution_state": "idle"})
	k.status.Unlock()
	k.abort(aborted, "a cell before it failed")
}

// outcome publishes the cell's result or error and returns its
// execute_reply content.
func (k *kernel) outcome(j *job, count int, res *run.CellResult, err error) map[string]any {
	var ename, evalue string
	var tb []string
	switch {
	case err != nil:
		ename, evalue = "KernelError", err.Error()
		if errors.Is(err, session.ErrDead) {
			ename, evalue = "DeadKernelError", "the kernel is dead ("+err.Error()+"); restart it"
		}
	case res.Error != nil:
		ename, evalue = res.Error.Name, res.Error.Value
		tb = lines(res.Error.Traceback)
		if res.Status != run.StatusOK && res.Status != run.StatusError && res.Reason != "" {
			// A limit stopped the cell (a timeout raises KeyboardInterrupt
			// in it): say which.
			tb = append(tb, "sandboxd: "+res.Reason)
		}
	case res.Status != run.StatusOK:
		ename, evalue = limitName(res.Status), res.Reason
	}
	if ename == "" {
		if res.Result != nil && !j.req.Silent {
			k.publish(j.msg, "execute_result", map[string]any{"execution_count": count, "data": res.Result, "metadata": map[string]any{}})
		}
		return map[string]any{"status": "ok", "execution_count": count, "user_expressions": map[string]any{}, "payload": []any{}}
	}
	if len(tb) == 0 {
		tb = []string{ename + ": " + evalue}
	}
	k.publish(j.msg, "error", errorContent(ename, evalue, tb))
	return replyError(ename, evalue, tb, count)
}

// limitName names the error of a cell a limit (or the kernel's end)
// stopped without an exception.
func limitName(s run.Status) string {
	switch s {
	case run.StatusTimeout:
		return "TimeoutError"
	case run.StatusMemoryLimit:
		return "MemoryError"
	}
	return "SandboxError(" + string(s) + ")"
}

// lines splits a traceback into Jupyter's list of lines.
func lines(tb string) []string {
	tb = strings.TrimRight(tb, "\n")
	if tb == "" {
		return nil
	}
	return strings.Split(tb, "\n")
}

func errorContent(ename, evalue string, tb []string) map[string]any {
	if tb == nil {
		tb = []string{ename + ": " + evalue}
	}
	return map[string]any{"ename": ename, "evalue": evalue, "traceback": tb}
}

func replyError(ename, evalue string, tb []string, count int) map[string]any {
	c := errorContent(ename, evalue, tb)
	c["status"], c["execution_count"] = "error", count
	return c
}

// drain takes every waiting execute request off the queue.
func (k *kernel) drain() []*job {
	var out []*job
	for {
		select {
		case j := <-k.jobs:
			k.mu.Lock()
			k.queued -= len(j.req.Code)
			k.mu.Unlock()
			out = append(out, j)
		default:
			return out
		}
	}
}

// abort answers execute requests "aborted", each between status busy and
// idle, as a kernel does after a failed cell (stop_on_error) or at a
// restart.
func (k *kernel) abort(jobs []*job, why string) {
	for _, j := range jobs {
		k.mu.Lock()
		count := k.count
		k.mu.Unlock()
		k.publishStatus(j.msg, "busy", true)
		k.reply(j.conn, j.msg, "execute_reply", map[string]any{"status": "aborted", "execution_count": count, "reason": why})
		k.publishStatus(j.msg, "idle", true)
	}
}

// interruptWindow: a SIGINT that reaches the session's kernel before it
// has taken up the cell is lost (it is ignored between cells), so an
// interrupt in a cell's first moments is repeated until the window has
// passed or the cell ended.
const interruptWindow = time.Second

// interrupt interrupts the running cell, as Ctrl-C does: the cell ends
// with KeyboardInterrupt and the kernel goes on.
func (k *kernel) interrupt() {
	k.mu.Lock()
	j := k.running
	k.mu.Unlock()
	if j == nil || !k.interruptJob(j) {
		return
	}
	left := interruptWindow - k.g.cfg.Now().Sub(j.started)
	if left <= 0 {
		return
	}
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	end := time.After(left)
	for {
		select {
		case <-j.done:
			return
		case <-end:
			return
		case <-t.C:
			if !k.interruptJob(j) {
				return
			}
		}
	}
}

// interruptJob interrupts the session's cell if it is still j's, and
// reports whether it was. k.mu is held across the check and the signal:
// the worker moves to the next cell under it, so a repeated interrupt
// never reaches a cell that came after j.
func (k *kernel) interruptJob(j *job) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.running != j {
		return false
	}
	_, _ = k.sess.Interrupt()
	return true
}

// restart replaces the kernel's session by a fresh one under the same
// id: its variables and files are gone, its count starts again. Waiting
// cells are aborted; a running one ends with the old session.
func (k *kernel) restart(ctx context.Context) error {
	k.mu.Lock()
	if k.restarting {
		k.mu.Unlock()
		return fmt.Errorf("%w: kernel %s is already restarting", errdefs.ErrConflict, k.id)
	}
	k.restarting = true
	old := k.sess
	k.mu.Unlock()
	defer func() {
		k.mu.Lock()
		k.restarting = false
		k.mu.Unlock()
	}()
	// No "restarting" status: Jupyter's clients take one for a restart
	// the server made on its own (a kernel that died), not one they asked
	// for; the fresh kernel says "starting", as a new one does.
	// The waiting cells are taken before the session goes, so none runs
	// on a dead one, and answered once the running one has ended (the
	// turn), so their status messages are not left out as a running
	// cell's would be.
	queued := k.drain()
	if err := k.g.cfg.Sessions.Delete(k.owner, old.ID()); err != nil && !errdefs.Is(err, errdefs.ErrNotFound) {
		k.abort(queued, "the kernel failed to restart")
		return fmt.Errorf("restart kernel %s: %w", k.id, err)
	}
	k.turn.Lock()
	defer k.turn.Unlock()
	k.abort(queued, "the kernel restarted")
	if err := k.boot(ctx); err != nil {
		return fmt.Errorf("restart kernel %s: %w", k.id, err)
	}
	k.g.log.Info("kernel restarted", "kernel", k.id, "session", k.sessionID())
	k.publishStatus(nil, "starting", false)
	k.publishStatus(nil, "idle", false)
	return nil
}

// publishStatus publishes a status message. onlyIdle leaves it out while
// a cell runs: a request answered then must not say "idle".
func (k *kernel) publishStatus(parent *message, state string, onlyIdle bool) {
	k.status.Lock()
	defer k.status.Unlock()
	k.mu.Lock()
	running := k.running != nil
	k.mu.Unlock()
	if onlyIdle && running {
		return
	}
	k.publish(parent, "status", map[string]string{"execution_state": state})
}

// newMessage is a message of the kernel on channel, the answer to parent
// (nil: none).
func (k *kernel) newMessage(channel string, parent *message, msgType string, content any) *message {
	k.mu.Lock()
	ks := k.ksession
	k.mu.Unlock()
	h, _ := json.Marshal(header{MsgID: newUUID(), MsgType: msgType, Session: ks, Username: "sandboxd", Version: protocolVersion, Date: isoTime(k.g.cfg.Now())})
	body, err := json.Marshal(content)
	if err != nil {
		body = []byte("{}")
	}
	m := &message{Channel: channel, Header: h, ParentHeader: json.RawMessage("{}"), Metadata: json.RawMessage("{}"), Content: body, Buffers: []json.RawMessage{}}
	if parent != nil {
		m.ParentHeader = parent.Header
	}
	return m
}

// publish sends a message on iopub to every connection of the kernel.
func (k *kernel) publish(parent *message, msgType string, content any) {
	m := k.newMessage("iopub", parent, msgType, content)
	k.mu.Lock()
	conns := make([]*conn, 0, len(k.conns))
	for c := range k.conns {
		conns = append(conns, c)
	}
	k.mu.Unlock()
	for _, c := range conns {
		c.send(m)
	}
}

// reply answers req on its channel, to the connection that sent it.
func (k *kernel) reply(c *conn, req *message, msgType string, content any) {
	c.send(k.newMessage(req.Channel, req, msgType, content))
}

// answer replies to a request that is not a cell, between status busy
// and idle as a kernel does (but for while a cell runs).
func (k *kernel) answer(c *conn, req *message, msgType string, content any) {
	k.publishStatus(req, "busy", true)
	k.reply(c, req, msgType, content)
	k.publishStatus(req, "idle", true)
}

// streamWriter turns a cell's output into stream messages. A write that
// ends inside a UTF-8 sequence keeps its tail for the next one, so a
// character cut by the pipe is not sent as two invalid halves.
type streamWriter struct {
	sendFn func(text string) // nil: the stream's output is dropped (silent)
	tail   []byte
}

func (k *kernel) stream(parent *message, name string, silent bool) *streamWriter {
	w := &streamWriter{}
	if !silent {
		w.sendFn = func(text string) { k.publish(parent, "stream", map[string]string{"name": name, "text": text}) }
	}
	return w
}

func (w *streamWriter) Write(p []byte) (int, error) {
	b := append(w.tail, p...)
	cut := len(b)
	// Back up over an incomplete sequence at the end (at most 3 bytes).
	for i := len(b) - 1; i >= 0 && i >= len(b)-3; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				cut = i
			}
			break
		}
	}
	w.tail = append([]byte(nil), b[cut:]...)
	w.send(b[:cut])
	return len(p), nil
}

func (w *streamWriter) flush() {
	w.send(w.tail)
	w.tail = nil
}

func (w *streamWriter) send(b []byte) {
	if len(b) == 0 || w.sendFn == nil {
		return
	}
	w.sendFn(strings.ToValidUTF8(string(b), "\uFFFD"))
}
