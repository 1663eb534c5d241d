package e2b

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/sandboxd/sandboxd/internal/errdefs"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/session"
)

// The code interpreter: POST /execute runs a cell in a context and streams
// E2B's events as NDJSON; /contexts makes, lists, restarts and removes
// contexts. A context is a session: the sandbox's default Python context
// is its first session, whose workspace holds the sandbox's files; a
// JavaScript context is a node session of its own, with its own workspace.

// executeRequest is POST /execute.
type executeRequest struct {
	Code      string            `json:"code"`
	ContextID string            `json:"context_id"`
	Language  string            `json:"language"`
	EnvVars   map[string]string `json:"env_vars"`
}

// mimeKeys maps MIME types onto the keys of E2B's result events.
var mimeKeys = map[string]string{
	"text/plain":             "text",
	"text/html":              "html",
	"text/markdown":          "markdown",
	"image/svg+xml":          "svg",
	"image/png":              "png",
	"image/jpeg":             "jpeg",
	"application/pdf":        "pdf",
	"text/latex":             "latex",
	"application/json":       "json",
	"application/javascript": "javascript",
}

// resultEvent is a display or the cell's value as an E2B "result" event.
func resultEvent(b run.MIMEBundle, main bool) map[string]any {
	ev := map[string]any{"type": "result", "is_main_result": main}
	for mime, v := range b {
		key, ok := mimeKeys[mime]
		if !ok {
			key = mime
		}
		if key == "json" {
			var j any
			if json.Unmarshal([]byte(v), &j) == nil {
				ev[key] = j
				continue
			}
		}
		ev[key] = v
	}
	return ev
}

// ndjson writes E2B's events, one line each, flushed, from the cell's
// output drains and its display callback at once. The first event sends
// the 200, so a cell that cannot start is still a plain error. After
// close it drops them: a background process of the sandbox may write
// once the handler has returned.
type ndjson struct {
	mu      sync.Mutex
	w       http.ResponseWriter
	rc      *http.ResponseController
	enc     *json.Encoder
	started bool
	closed  bool
	err     error
}

func newNDJSON(w http.ResponseWriter) *ndjson {
	return &ndjson{w: w, rc: http.NewResponseController(w), enc: json.NewEncoder(w)}
}

func (n *ndjson) emit(ev any) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed || n.err != nil {
		return
	}
	if !n.started {
		n.started = true
		n.w.Header().Set("Content-Type", "application/x-ndjson")
		n.w.Header().Set("X-Content-Type-Options", "nosniff")
		n.w.WriteHeader(http.StatusOK)
	}
	if n.err = n.enc.Encode(ev); n.err == nil {
		n.err = n.rc.Flush()
	}
}

// close ends the stream and reports whether any event went out.
func (n *ndjson) close() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.closed = true
	return n.started
}

// textStream turns a stream's bytes into E2B "stdout"/"stderr" events
// as they come, a line or more at a time, as Jupyter's output arrives: a
// print's text and its newline, written apart, are one event. A partial
// line (a progress bar, a prompt) goes out after partialDelay, up to its
// last whole UTF-8 sequence.
type textStream struct {
	out     *ndjson
	typ     string
	now     func() time.Time
	mu      sync.Mutex
	pending []byte
	timer   *time.Timer
}

// partialDelay is how long a partial line waits for the rest of it:
// ipykernel's OutStream.flush_interval, the most a Jupyter kernel holds
// output back. Less split prints under load: an unbuffered print writes
// its text and its newline apart, and a CI run on a busy 2-core host saw
// 50 ms pass between the two ("first", "\n" where E2B gives "first\n").
const partialDelay = 200 * time.Millisecond

func (t *textStream) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pending = append(t.pending, p...)
	if i := bytes.LastIndexByte(t.pending, '\n'); i >= 0 {
		t.send(i + 1)
	}
	if len(t.pending) > 0 && t.timer == nil {
		t.timer = time.AfterFunc(partialDelay, t.partial)
	}
	return len(p), nil
}

// partial sends a partial line that waited long enough.
func (t *textStream) partial() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.timer = nil
	cut := len(t.pending)
	for i := len(t.pending) - 1; i >= 0 && i >= len(t.pending)-utf8.UTFMax; i-- {
		if utf8.RuneStart(t.pending[i]) {
			if !utf8.FullRune(t.pending[i:]) {
				cut = i
			}
			break
		}
	}
	t.send(cut)
}

// send emits the first n pending bytes; t.mu is held.
func (t *textStream) send(n int) {
	if n == 0 {
		return
	}
	t.out.emit(map[string]any{"type": t.typ, "text": string(t.pending[:n]), "timestamp": t.now().UTC().Format(time.RFC3339Nano)})
	t.pending = append(t.pending[:0], t.pending[n:]...)
}

// flush sends what is pending, at the cell's end.
func (t *textStream) flush() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.timer != nil {
		t.timer.Stop()
		t.timer = nil
	}
	t.send(len(t.pending))
}

func (s *Server) handleExecute(w http.ResponseWriter, r *http.Request) {
	sb := sandboxFrom(r.Context())
	var req executeRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, fmt.Errorf("%w: the request body: %w", errdefs.ErrInvalidArgument, err))
		return
	}
	sess, err := s.contextSession(r, sb, req.ContextID, req.Language)
	if err != nil {
		writeError(w, err)
		return
	}
	out := newNDJSON(w)
	stdout := &textStream{out: out, typ: "stdout", now: s.cfg.Now}
	stderr := &textStream{out: out, typ: "stderr", now: s.cfg.Now}
	live := run.CellStream{
		Stdout:  stdout,
		Stderr:  stderr,
		Display: func(b run.MIMEBundle) { out.emit(resultEvent(b, false)) },
	}
	res, err := withEnv(r.Context(), sess, req.EnvVars, func() (*run.CellResult, error) {
		return sess.Exec(r.Context(), run.CellRequest{Code: req.Code}, live)
	})
	stdout.flush()
	stderr.flush()
	if err != nil {
		// A cell that did not start (a dead kernel, a full queue)
		// wrote nothing: a plain error.
		if !out.close() {
			writeError(w, err)
		}
		return
	}
	defer out.close()
	s.logCell(sb, "execute", res)
	if res.Result != nil {
		out.emit(resultEvent(res.Result, true))
	}
	if ev := errorEvent(res); ev != nil {
		out.emit(ev)
	}
	out.emit(map[string]any{"type": "number_of_executions", "execution_count": res.Cell})
	out.emit(map[string]any{"type": "end_of_execution"})
}

// errorEvent is the cell's exception, or the limit that stopped it, as
// E2B's "error" event; nil for a cell that ran to its end.
func errorEvent(res *run.CellResult) map[string]any {
	switch {
	case res.Status == run.StatusOK:
		return nil
	case res.Status == run.StatusError && res.Error != nil:
		return map[string]any{"type": "error", "name": res.Error.Name, "value": res.Error.Value, "traceback": res.Error.Traceback}
	}
	ev := map[string]any{"type": "error", "name": limitErrorName(res.Status), "value": res.Reason, "traceback": ""}
	if res.Error != nil {
		ev["traceback"] = res.Error.Traceback
	}
	return ev
}

// limitErrorName names the error of a cell a limit stopped.
func limitErrorName(st run.Status) string {
	switch st {
	case run.StatusTimeout:
		return "TimeoutError"
	case run.StatusMemoryLimit:
		return "MemoryError"
	}
	return "SandboxError"
}

// languageRuntime maps E2B's language names onto sandboxd's runtimes.
func languageRuntime(lang string) string {
	switch lang {
	case "", "python", "python3":
		return "python"
	case "js", "javascript", "node":
		return "javascript"
	}
	return lang
}

// contextSession is the session of the context id, or of the language's
// default context, made at its first use as E2B's are.
func (s *Server) contextSession(r *http.Request, sb *sandbox, id, lang string) (*session.Session, error) {
	if id != "" && lang != "" {
		return nil, fmt.Errorf("%w: give context_id or language, not both", errdefs.ErrInvalidArgument)
	}
	rt := languageRuntime(lang)
	sb.mu.Lock()
	i := slices.IndexFunc(sb.contexts, func(c codeContext) bool {
		if id != "" {
			return c.ID == id
		}
		return c.def && c.Language == rt
	})
	var sessID string
	if i >= 0 {
		sessID = sb.contexts[i].session
	}
	sb.mu.Unlock()
	switch {
	case i >= 0:
		return s.cfg.Sessions.Get(sb.owner, sessID)
	case id != "":
		return nil, fmt.Errorf("%w: context %s not found in this sandbox", errdefs.ErrNotFound, run.Quote(id, run.MaxName))
	}
	c, err := s.newContext(r, sb, rt, true)
	if err != nil {
		return nil, err
	}
	return s.cfg.Sessions.Get(sb.owner, c.session)
}

// newContext starts a session of runtime rt as a context of sb (its
// language's default one when def).
func (s *Server) newContext(r *http.Request, sb *sandbox, rt string, def bool) (codeContext, error) {
	sess, err := s.newSession(r.Context(), sb.owner, rt, sb.env)
	if err != nil {
		return codeContext{}, err
	}
	c := codeContext{ID: sess.ID(), Language: rt, Cwd: homeDir, def: def, session: sess.ID()}
	sb.mu.Lock()
	alive := sb.contexts != nil
	if alive {
		sb.contexts = append(sb.contexts, c)
	}
	sb.mu.Unlock()
	if !alive {
		_ = s.cfg.Sessions.Delete(sb.owner, c.session)
		return codeContext{}, fmt.Errorf("%w: sandbox %s was killed", errGone, sb.id)
	}
	return c, nil
}

// contextRequest is POST /contexts.
type contextRequest struct {
	Language string `json:"language"`
	Cwd      string `json:"cwd"`
}

func (s *Server) handleContextCreate(w http.ResponseWriter, r *http.Request) {
	sb := sandboxFrom(r.Context())
	var req contextRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, fmt.Errorf("%w: the request body: %w", errdefs.ErrInvalidArgument, err))
		return
	}
	if req.Cwd != "" && req.Cwd != homeDir {
		writeError(w, fmt.Errorf("%w: cwd %s: a context runs in %s (the workspace)", errNotOffered, run.Quote(req.Cwd, run.MaxName), homeDir))
		return
	}
	c, err := s.newContext(r, sb, languageRuntime(req.Language), false)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (s *Server) handleContextList(w http.ResponseWriter, r *http.Request) {
	sb := sandboxFrom(r.Context())
	sb.mu.Lock()
	out := append([]codeContext{}, sb.contexts...)
	sb.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

// handleContextDelete removes a context and its session. The default
// Python context holds the sandbox's files and cannot be removed.
func (s *Server) handleContextDelete(w http.ResponseWriter, r *http.Request) {
	sb := sandboxFrom(r.Context())
	id := r.PathValue("ctx")
	if id == sb.id {
		writeError(w, fmt.Errorf("%w: the default Python context holds the sandbox's files; kill the sandbox instead", errdefs.ErrInvalidArgument))
		return
	}
	sb.mu.Lock()
	i := contextIndex(sb.contexts, id)
	var c codeContext
	if i > 0 {
		c = sb.contexts[i]
		sb.contexts = slices.Delete(sb.contexts, i, i+1)
	}
	sb.mu.Unlock()
	if i <= 0 {
		writeError(w, fmt.Errorf("%w: context %s not found in this sandbox", errdefs.ErrNotFound, run.Quote(id, run.MaxName)))
		return
	}
	if err := s.cfg.Sessions.Delete(sb.owner, c.session); err != nil && !errors.Is(err, session.ErrNotFound) {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleContextRestart starts a context's kernel afresh, its state gone:
// a new session takes the context's place under the same id, and the
// old one is closed. The default Python context's session holds the
// sandbox's files, so it is not restarted (a new context is the way).
func (s *Server) handleContextRestart(w http.ResponseWriter, r *http.Request) {
	sb := sandboxFrom(r.Context())
	id := r.PathValue("ctx")
	sb.mu.Lock()
	i := contextIndex(sb.contexts, id)
	var lang string
	if i >= 0 {
		lang = sb.contexts[i].Language
	}
	sb.mu.Unlock()
	switch {
	case i < 0:
		writeError(w, fmt.Errorf("%w: context %s not found in this sandbox", errdefs.ErrNotFound, run.Quote(id, run.MaxName)))
		return
	case id == sb.id:
		writeError(w, fmt.Errorf("%w: restarting the default Python context, which holds the sandbox's files; create a new context instead", errNotOffered))
		return
	}
	sess, err := s.newSession(r.Context(), sb.owner, lang, sb.env)
	if err != nil {
		writeError(w, err)
		return
	}
	sb.mu.Lock()
	old := ""
	if i := contextIndex(sb.contexts, id); i >= 0 {
		old, sb.contexts[i].session = sb.contexts[i].session, sess.ID()
	}
	sb.mu.Unlock()
	if old == "" { // removed, or the sandbox killed, meanwhile
		old = sess.ID()
	}
	if err := s.cfg.Sessions.Delete(sb.owner, old); err != nil && !errors.Is(err, session.ErrNotFound) {
		s.log.Error("e2b: close a restarted context's session", "sandbox", sb.id, "context", id, "err", err)
	}
	if old == sess.ID() {
		writeError(w, fmt.Errorf("%w: context %s is gone", errdefs.ErrNotFound, run.Quote(id, run.MaxName)))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func contextIndex(cs []codeContext, id string) int {
	return slices.IndexFunc(cs, func(c codeContext) bool { return c.ID == id })
}

// logCell logs and counts a cell an E2B call ran, as the API does its
// cells.
func (s *Server) logCell(sb *sandbox, what string, res *run.CellResult) {
	if s.cfg.Metrics != nil {
		s.cfg.Metrics.Cell(res.Status)
	}
	s.log.Info("e2b "+what, "sandbox", sb.id, "session", res.Session, "cell", res.Cell, "status", res.Status,
		"state", res.State, "wall", res.WallTime.Round(time.Microsecond), "reason", run.Clip(res.Reason, run.MaxMessage))
}
