package api

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/sandboxd/sandboxd/internal/errdefs"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/session"
	"github.com/sandboxd/sandboxd/internal/wire"
	"github.com/sandboxd/sandboxd/internal/workspace"
)

// The session endpoints: a session is one long-lived kernel in its own
// sandbox, which runs cell after cell (POST .../exec) and whose workspace
// files can be written, read, listed and removed while its kernel lives.
// When the kernel dies its workspace goes with it, at once, and every
// request but GET and DELETE of the session is a 409 saying why it died.
// Sessions belong to the token that created them
// (session.Owner): another token's session is "not found", as a missing
// one is.

// ReplicaHeader, on a 404 for a session that lives on another replica,
// names that replica, so a router in front can send the request there.
const ReplicaHeader = "Sandboxd-Replica"

// sessionsPath is the root of the session endpoints.
const sessionsPath = "/v1/sessions"

// maxListEntries caps a workspace listing (truncated says it was cut).
const maxListEntries = 10000

// manager is the session manager; without one it answers 503 and returns
// nil.
func (s *Server) manager(w http.ResponseWriter) *session.Manager {
	if s.cfg.Sessions == nil {
		writeError(w, fmt.Errorf("%w: this server runs no session manager, so it serves no sessions", errdefs.ErrUnavailable))
	}
	return s.cfg.Sessions
}

// owner is whose sessions a request may see: its token's.
func owner(r *http.Request) string { return Owner(r) }

// lookup returns the caller's session named by the path's {id}, or answers
// the error (404, with the replica's name for a session of another one)
// and returns nil.
func (s *Server) lookup(w http.ResponseWriter, r *http.Request) *session.Session {
	m := s.manager(w)
	if m == nil {
		return nil
	}
	sess, err := m.Get(owner(r), r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return nil
	}
	return sess
}

func sessionURL(id string) string { return sessionsPath + "/" + url.PathEscape(id) }

func (s *Server) handleSessionCreate(w http.ResponseWriter, r *http.Request) {
	m := s.manager(w)
	if m == nil {
		return
	}
	var spec run.SessionSpec
	if err := s.decodeRequest(r, &spec); err != nil {
		s.reject(w, err)
		return
	}
	// The request's context bounds the start: a client gone before the
	// kernel is ready leaves no session behind.
	sess, err := m.Create(r.Context(), owner(r), &spec)
	if err != nil {
		if c := classOf(err); c == errdefs.ErrInvalidArgument || c == errdefs.ErrTooLarge {
			s.reject(w, err)
			return
		}
		writeError(w, err)
		return
	}
	w.Header().Set("Location", sessionURL(sess.ID()))
	writeJSON(w, http.StatusCreated, sess.Info())
}

func (s *Server) handleSessionList(w http.ResponseWriter, r *http.Request) {
	if m := s.manager(w); m != nil {
		writeJSON(w, http.StatusOK, wire.SessionList{Sessions: m.List(owner(r))})
	}
}

// handleSessionGet describes a session. Looking does not count as using:
// it does not restart the idle clock.
func (s *Server) handleSessionGet(w http.ResponseWriter, r *http.Request) {
	if sess := s.lookup(w, r); sess != nil {
		writeJSON(w, http.StatusOK, sess.Info())
	}
}

func (s *Server) handleSessionDelete(w http.ResponseWriter, r *http.Request) {
	m := s.manager(w)
	if m == nil {
		return
	}
	if err := m.Delete(owner(r), r.PathValue("id")); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleSessionExec runs one cell: its result as JSON, or NDJSON events
// as the cell goes when asked (?stream=1 or Accept: application/x-ndjson).
// A dead session is a 409 that says why it died.
func (s *Server) handleSessionExec(w http.ResponseWriter, r *http.Request) {
	m := s.manager(w)
	if m == nil {
		return
	}
	// Whether the session's queue has room for a cell of this request's
	// size, before the body is read (session.Expect): a burst of large
	// cells past the queue is refused unread, not read and decoded to be
	// refused. A chunked body's size is unknown, and only its count is
	// checked: the body budget reserves the whole --max-body for it. A
	// session that is not found is said after the body's own errors.
	sess, lookupErr := m.Get(owner(r), r.PathValue("id"))
	expected := func() {}
	if lookupErr == nil {
		done, err := sess.Expect(r.ContentLength)
		if err != nil {
			writeError(w, err)
			return
		}
		expected = done
	}
	var req run.CellRequest
	err := s.decodeRequest(r, &req)
	expected()
	if err != nil {
		s.reject(w, err)
		return
	}
	if lookupErr != nil {
		writeError(w, lookupErr)
		return
	}
	if wantsStream(r) {
		s.streamCell(w, r, sess, req)
		return
	}
	res, err := s.Cell(r.Context(), sess, req, run.CellStream{})
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
	s.answered(cellBytes(res))
}

// cellBytes is the output a cell's result holds.
func cellBytes(res *run.CellResult) int64 {
	if res == nil {
		return 0
	}
	return int64(len(res.Stdout) + len(res.Stderr))
}

// cellEvents are the lines of a streamed cell.
var cellEvents = events{
	chunk: func(typ, data, encoding string) any { return wire.CellEvent{Type: typ, Data: data, Encoding: encoding} },
	fail:  func(d *ErrorDetail) any { return wire.CellEvent{Type: "error", Error: d} },
}

// streamCell answers with NDJSON: output chunks and displays as they
// happen, then the cell's result. A cell that cannot start (a dead
// session) is still a plain 409.
func (s *Server) streamCell(w http.ResponseWriter, r *http.Request, sess *session.Session, req run.CellRequest) {
	ew := newEventWriter(w, cellEvents)
	live := run.CellStream{
		Stdout:  ew.output("stdout"),
		Stderr:  ew.output("stderr"),
		Display: func(b run.MIMEBundle) { _ = ew.emit(wire.CellEvent{Type: "display", Display: b}) },
	}
	res, err := s.Cell(r.Context(), sess, req, live)
	var last any
	if res != nil {
		last = wire.CellEvent{Type: "result", Result: res}
	}
	ew.finish(last, err, func(err error) { writeError(w, err) })
	s.answered(cellBytes(res))
}

// Cell runs one cell of sess, and logs and counts it. A client that goes
// away interrupts the cell (Exec watches ctx). The Jupyter gateway runs
// its cells through it too, so a notebook's are logged and counted as
// the API's.
func (s *Server) Cell(ctx context.Context, sess *session.Session, req run.CellRequest, live run.CellStream) (*run.CellResult, error) {
	start := s.cfg.Now()
	res, err := sess.Exec(ctx, req, live)
	if err != nil {
		if classOf(err) == errdefs.ErrExhausted {
			// The session's queue or the cells' gate: a 429, counted
			// as a run's is.
			s.metrics.Rejected("queue_full")
		}
		return nil, err
	}
	took := s.cfg.Now().Sub(start)
	s.metrics.Cell(res.Status)
	level := slog.LevelInfo
	if res.Status == run.StatusInternalError {
		// Only the sandbox's failure: a cell its client gave up on is
		// canceled.
		level = slog.LevelError
	}
	// run= is the session's sandbox (its run directory and cgroups).
	s.log.Log(ctx, level, "cell", "session", res.Session, "run", sess.RunID(), "cell", res.Cell,
		"status", res.Status, "state", res.State, "wall", res.WallTime.Round(time.Microsecond),
		"cpu", res.CPUTime.Round(time.Microsecond), "took", took.Round(time.Microsecond), "reason", run.Clip(res.Reason, run.MaxMessage))
	return res, nil
}

// handleFilePut writes the request body to a workspace file, streamed,
// never held whole: at most the request body limit or the workspace's
// size, whichever is smaller. ?mode=0755 sets its permission bits (octal;
// default 0644).
func (s *Server) handleFilePut(w http.ResponseWriter, r *http.Request) {
	sess := s.lookup(w, r)
	if sess == nil {
		return
	}
	mode, err := fileMode(r.URL.Query().Get("mode"))
	if err != nil {
		s.reject(w, err)
		return
	}
	limit := s.cfg.MaxBody
	if t := int64(sess.Info().Limits.Tmpfs); t > 0 && t < limit {
		limit = t
	}
	if r.ContentLength > limit {
		s.reject(w, fmt.Errorf("%w: the file is %d bytes; an upload to this session is at most %d (the request body limit or the workspace size, whichever is smaller)", errdefs.ErrTooLarge, r.ContentLength, limit))
		return
	}
	// Touched before as well: a long upload is a use of the session.
	sess.Touch()
	n, err := sess.PutFile(r.PathValue("path"), clientBody{r.Body}, mode, limit)
	if err != nil {
		writeError(w, err)
		return
	}
	sess.Touch()
	name, _ := workspace.CleanName(r.PathValue("path")) // PutFile took it
	w.Header().Set("Location", fileURL(sess.ID(), name))
	writeJSON(w, http.StatusCreated, workspace.FileInfo{Name: name, Type: "file", Size: n, Mode: uint32(mode.Perm()), ModTime: s.cfg.Now()})
}

// clientBody is a request body whose read errors are the client's: one
// cut short, too slow for the read timeout or too large is a 4xx that says
// so (bodyError), not an internal error of the workspace it was going to.
type clientBody struct{ io.Reader }

func (b clientBody) Read(p []byte) (int, error) {
	n, err := b.Reader.Read(p)
	if err != nil && err != io.EOF {
		err = bodyError(err)
	}
	return n, err
}

// fileMode parses ?mode: octal permission bits, 0644 when absent.
func fileMode(s string) (os.FileMode, error) {
	if s == "" {
		return 0o644, nil
	}
	v, perr := strconv.ParseUint(strings.TrimPrefix(s, "0o"), 8, 32)
	if perr != nil || v == 0 || v > 0o777 {
		return 0, fmt.Errorf("%w: mode %s: want octal permission bits from 0001 to 0777, such as 0644 or 0755", errdefs.ErrInvalidArgument, run.Quote(s, run.MaxName))
	}
	return os.FileMode(v), nil
}

func fileURL(id, name string) string {
	segs := strings.Split(name, "/")
	for i, seg := range segs {
		segs[i] = url.PathEscape(seg)
	}
	return sessionURL(id) + "/files/" + strings.Join(segs, "/")
}

// handleFileGet streams a workspace file as it is. Only regular files are
// served; a symlink anywhere in the path is refused, never followed.
func (s *Server) handleFileGet(w http.ResponseWriter, r *http.Request) {
	sess := s.lookup(w, r)
	if sess == nil {
		return
	}
	f, info, err := sess.OpenFile(r.PathValue("path"))
	if err != nil {
		writeError(w, err)
		return
	}
	defer f.Close()
	sess.Touch()
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(info.Size, 10))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Disposition", attachment(info.Name))
	h.Set("Cache-Control", "no-store")
	h.Set("Last-Modified", info.ModTime.UTC().Format(http.TimeFormat))
	w.WriteHeader(http.StatusOK)
	// The size promised: the program may be appending to the file.
	_, _ = io.CopyN(w, f, info.Size)
}

// attachment is a Content-Disposition naming the file by its base name,
// quoted or RFC 2231-encoded as it needs: no character of the name can
// break out of the header.
func attachment(name string) string {
	if v := mime.FormatMediaType("attachment", map[string]string{"filename": path.Base(name)}); v != "" {
		return v
	}
	return "attachment"
}

func (s *Server) handleFileDelete(w http.ResponseWriter, r *http.Request) {
	sess := s.lookup(w, r)
	if sess == nil {
		return
	}
	if err := sess.RemoveFile(r.PathValue("path")); err != nil {
		writeError(w, err)
		return
	}
	sess.Touch()
	w.WriteHeader(http.StatusNoContent)
}

// handleFileList lists the workspace, or the directory ?dir=, with every
// level below it; symlinks are listed, not followed.
func (s *Server) handleFileList(w http.ResponseWriter, r *http.Request) {
	sess := s.lookup(w, r)
	if sess == nil {
		return
	}
	files, truncated, err := sess.ListFiles(r.URL.Query().Get("dir"), maxListEntries)
	if err != nil {
		writeError(w, err)
		return
	}
	sess.Touch()
	list := wire.FileList{Files: make([]workspace.FileInfo, len(files)), Truncated: truncated}
	for i, f := range files {
		list.Files[i] = workspace.FileInfo(f)
	}
	writeJSON(w, http.StatusOK, list)
}

// unsafePath says what is wrong with a request path under /v1/sessions
// that names something by a path it is not ("" when nothing is): a "." or
// ".." segment, an empty one ("//", also as an absolute file name), a NUL
// byte or a backslash, literally or percent-encoded. ServeMux would clean
// such a path and redirect to another resource; here it is refused before
// routing, so nothing is touched.
func unsafePath(r *http.Request) string {
	raw, dec := r.URL.EscapedPath(), r.URL.Path
	if !underSessions(raw) && !underSessions(dec) && !underSessions(path.Clean("/"+dec)) {
		return ""
	}
	// dec is the path with every escape undone (%2F is a "/" there, %2e
	// a "."), so its segments show the encoded forms too.
	for _, p := range []string{raw, dec} {
		segs := strings.Split(p, "/")
		for i, seg := range segs {
			switch {
			case seg == "" && i > 0 && i < len(segs)-1:
				return "an empty segment (//)"
			case seg == "." || seg == "..":
				return "a '.' or '..' segment"
			case strings.ContainsAny(seg, "\x00\\"):
				return "a NUL byte or a backslash"
			}
		}
	}
	return ""
}

func underSessions(p string) bool {
	return p == sessionsPath || strings.HasPrefix(p, sessionsPath+"/")
}

// handleSessionInterrupt interrupts the session's running cell, if any:
// the cell's own request then answers with a KeyboardInterrupt error.
func (s *Server) handleSessionInterrupt(w http.ResponseWriter, r *http.Request) {
	sess := s.lookup(w, r)
	if sess == nil {
		return
	}
	running, err := sess.Interrupt()
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, wire.InterruptResult{Interrupted: running})
}
