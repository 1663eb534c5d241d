// Package clienttest is a fake of sandboxd's session API, in memory, for
// the tests of its clients: it keeps sessions and their files as the
// daemon does and leaves what a cell does to the test (Server.Exec).
package clienttest

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/runtimes"
	"github.com/sandboxd/sandboxd/internal/wire"
	"github.com/sandboxd/sandboxd/internal/workspace"
)

// ExecFunc runs one cell of fake session id: it may send events (output
// chunks, displays) with emit while it runs, and returns the cell's result
// or, instead, an error the daemon answers with. The server fills the
// result's session, cell, output and displays (from the events) when they
// are left zero.
type ExecFunc func(id string, req run.CellRequest, emit func(wire.CellEvent)) (*run.CellResult, *wire.ErrorDetail)

// Session is one fake session.
type Session struct {
	Info  run.SessionInfo
	Spec  run.SessionSpec
	Files map[string][]byte
	// Cells are the cells' code, in order.
	Cells []string
}

// Server is a fake daemon serving /v1/sessions on a loopback port.
type Server struct {
	*httptest.Server
	// Token, if set, must come as "Authorization: Bearer <Token>".
	Token string
	// Exec runs cells; nil answers every cell ok with nothing.
	Exec ExecFunc

	mu       sync.Mutex
	sessions map[string]*Session
	n        int
}

// New starts a Server, closed at the end of the test.
func New(t testing.TB) *Server {
	s := &Server{sessions: map[string]*Session{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/sessions", s.create)
	mux.HandleFunc("GET /v1/sessions", s.list)
	mux.HandleFunc("GET /v1/sessions/{id}", s.get)
	mux.HandleFunc("DELETE /v1/sessions/{id}", s.delete)
	mux.HandleFunc("POST /v1/sessions/{id}/exec", s.exec)
	mux.HandleFunc("GET /v1/sessions/{id}/files", s.listFiles)
	mux.HandleFunc("PUT /v1/sessions/{id}/files/{path...}", s.putFile)
	mux.HandleFunc("GET /v1/sessions/{id}/files/{path...}", s.getFile)
	mux.HandleFunc("DELETE /v1/sessions/{id}/files/{path...}", s.deleteFile)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.Token != "" && r.Header.Get("Authorization") != "Bearer "+s.Token {
			writeError(w, http.StatusUnauthorized, "unauthorized", "missing or wrong bearer token")
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

// Session returns a copy of session id as it is now.
func (s *Server) Session(id string) (Session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.sessions[id]
	if ss == nil {
		return Session{}, false
	}
	c := *ss
	c.Files = maps.Clone(ss.Files)
	c.Cells = slices.Clone(ss.Cells)
	return c, true
}

// Kill marks session id dead, as a kernel killed at a limit is.
func (s *Server) Kill(id, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ss := s.sessions[id]; ss != nil {
		ss.Info.State, ss.Info.Reason = run.SessionDead, reason
	}
}

// Remove removes session id, as its idle timeout would.
func (s *Server) Remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sessions, id)
}

// Add adds a session as if created, and returns its id.
func (s *Server) Add(spec run.SessionSpec) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.add(spec).Info.ID
}

func (s *Server) add(spec run.SessionSpec) *Session {
	s.n++
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC).Add(time.Duration(s.n) * time.Minute)
	rt := spec.Runtime
	if rt == "" {
		rt = "python"
	}
	ss := &Session{
		Info: run.SessionInfo{
			ID: fmt.Sprintf("fake-%026d", s.n), Runtime: rt, Version: "3.11.2", State: run.SessionIdle,
			Created: now, LastUsed: now, ExpiresAt: now.Add(10 * time.Minute), IdleTimeout: spec.IdleTimeout, Limits: spec.Limits,
		},
		Spec:  spec,
		Files: map[string][]byte{},
	}
	for _, f := range spec.Files {
		ss.Files[f.Name] = f.Content
	}
	s.sessions[ss.Info.ID] = ss
	return ss
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(wire.ErrorBody{Error: wire.ErrorDetail{Code: code, Message: msg}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// find returns the request's session, or answers 404 and returns nil.
func (s *Server) find(w http.ResponseWriter, r *http.Request) *Session {
	s.mu.Lock()
	ss := s.sessions[r.PathValue("id")]
	s.mu.Unlock()
	if ss == nil {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no session %q (it may have expired)", r.PathValue("id")))
	}
	return ss
}

func (s *Server) create(w http.ResponseWriter, r *http.Request) {
	var spec run.SessionSpec
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&spec); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_argument", err.Error())
		return
	}
	if spec.Runtime != "" {
		// The daemon's rule, from the same registry: a runtime with a
		// kernel, by name or alias.
		rt, err := runtimes.Default().Lookup(spec.Runtime)
		if err != nil || rt.Kernel == nil {
			writeError(w, http.StatusBadRequest, "invalid_argument", fmt.Sprintf("runtime %q has no session kernel", spec.Runtime))
			return
		}
		spec.Runtime = rt.Name
	}
	s.mu.Lock()
	info := s.add(spec).Info
	s.mu.Unlock()
	writeJSON(w, http.StatusCreated, info)
}

func (s *Server) list(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	list := wire.SessionList{Sessions: []run.SessionInfo{}}
	for _, ss := range s.sessions {
		list.Sessions = append(list.Sessions, ss.Info)
	}
	s.mu.Unlock()
	sort.Slice(list.Sessions, func(i, j int) bool { return list.Sessions[i].Created.Before(list.Sessions[j].Created) })
	writeJSON(w, http.StatusOK, list)
}

func (s *Server) get(w http.ResponseWriter, r *http.Request) {
	if ss := s.find(w, r); ss != nil {
		s.mu.Lock()
		info := ss.Info
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, info)
	}
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request) {
	if ss := s.find(w, r); ss != nil {
		s.mu.Lock()
		delete(s.sessions, ss.Info.ID)
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *Server) exec(w http.ResponseWriter, r *http.Request) {
	ss := s.find(w, r)
	if ss == nil {
		return
	}
	var req run.CellRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_argument", err.Error())
		return
	}
	s.mu.Lock()
	if ss.Info.State == run.SessionDead {
		reason := ss.Info.Reason
		s.mu.Unlock()
		writeError(w, http.StatusConflict, "conflict", "session is dead: "+reason)
		return
	}
	ss.Info.Cells++
	ss.Cells = append(ss.Cells, req.Code)
	cell := ss.Info.Cells
	s.mu.Unlock()

	stream := r.URL.Query().Get("stream") == "1" && strings.Contains(r.Header.Get("Accept"), wire.NDJSON)
	var (
		enc     = json.NewEncoder(w)
		started bool
		stdout  []byte
		stderr  []byte
		display []run.MIMEBundle
	)
	emit := func(ev wire.CellEvent) {
		switch ev.Type {
		case "stdout", "stderr":
			b, _ := run.DecodeBytes(ev.Data, ev.Encoding)
			if ev.Type == "stdout" {
				stdout = append(stdout, b...)
			} else {
				stderr = append(stderr, b...)
			}
		case "display":
			display = append(display, ev.Display)
		}
		if !stream {
			return
		}
		if !started {
			w.Header().Set("Content-Type", wire.NDJSON)
			w.WriteHeader(http.StatusOK)
			started = true
		}
		_ = enc.Encode(ev)
		http.NewResponseController(w).Flush()
	}
	var (
		res  *run.CellResult
		fail *wire.ErrorDetail
	)
	if s.Exec != nil {
		res, fail = s.Exec(ss.Info.ID, req, emit)
	} else {
		res = &run.CellResult{Status: run.StatusOK}
	}
	if fail != nil {
		if started {
			emit(wire.CellEvent{Type: "error", Error: fail})
			return
		}
		writeError(w, http.StatusInternalServerError, fail.Code, fail.Message)
		return
	}
	res.Session, res.Cell = ss.Info.ID, cell
	if res.Stdout == nil {
		res.Stdout = stdout
	}
	if res.Stderr == nil {
		res.Stderr = stderr
	}
	if res.Display == nil {
		res.Display = display
	}
	if res.State == "" {
		res.State = run.SessionIdle
	}
	s.mu.Lock()
	ss.Info.State = res.State
	if res.State == run.SessionDead {
		ss.Info.Reason = res.Reason
	}
	s.mu.Unlock()
	if !stream {
		writeJSON(w, http.StatusOK, res)
		return
	}
	emit(wire.CellEvent{Type: "result", Result: res})
}

// filePath is the request's file path, or "" after a 400.
func filePath(w http.ResponseWriter, r *http.Request) string {
	p := r.PathValue("path")
	if p == "" || strings.HasPrefix(p, "/") || path.Clean(p) != p || strings.HasPrefix(p, "../") || p == ".." {
		writeError(w, http.StatusBadRequest, "invalid_argument", fmt.Sprintf("bad file name %q", p))
		return ""
	}
	return p
}

func (s *Server) putFile(w http.ResponseWriter, r *http.Request) {
	ss := s.find(w, r)
	if ss == nil {
		return
	}
	p := filePath(w, r)
	if p == "" {
		return
	}
	b, err := io.ReadAll(r.Body)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_argument", err.Error())
		return
	}
	s.mu.Lock()
	ss.Files[p] = b
	s.mu.Unlock()
	writeJSON(w, http.StatusCreated, workspace.FileInfo{Name: p, Type: "file", Size: int64(len(b)), Mode: 0o644, ModTime: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)})
}

func (s *Server) getFile(w http.ResponseWriter, r *http.Request) {
	ss := s.find(w, r)
	if ss == nil {
		return
	}
	p := filePath(w, r)
	if p == "" {
		return
	}
	s.mu.Lock()
	b, ok := ss.Files[p]
	s.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no file %q in the workspace", p))
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = w.Write(b)
}

func (s *Server) deleteFile(w http.ResponseWriter, r *http.Request) {
	ss := s.find(w, r)
	if ss == nil {
		return
	}
	p := filePath(w, r)
	if p == "" {
		return
	}
	s.mu.Lock()
	_, ok := ss.Files[p]
	delete(ss.Files, p)
	s.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no file %q in the workspace", p))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) listFiles(w http.ResponseWriter, r *http.Request) {
	ss := s.find(w, r)
	if ss == nil {
		return
	}
	dir := r.URL.Query().Get("dir")
	prefix := ""
	if dir != "" && dir != "." {
		prefix = strings.TrimSuffix(dir, "/") + "/"
	}
	mtime := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	s.mu.Lock()
	// As the daemon lists: the whole tree under dir, by workspace paths.
	list := wire.FileList{Files: []workspace.FileInfo{}}
	dirs := map[string]bool{}
	for name, b := range ss.Files {
		rest, ok := strings.CutPrefix(name, prefix)
		if !ok {
			continue
		}
		parts := strings.Split(rest, "/")
		for i := 1; i < len(parts); i++ {
			d := prefix + strings.Join(parts[:i], "/")
			if !dirs[d] {
				dirs[d] = true
				list.Files = append(list.Files, workspace.FileInfo{Name: d, Type: "dir", Mode: 0o755, ModTime: mtime})
			}
		}
		list.Files = append(list.Files, workspace.FileInfo{Name: name, Type: "file", Size: int64(len(b)), Mode: 0o644, ModTime: mtime})
	}
	s.mu.Unlock()
	sort.Slice(list.Files, func(i, j int) bool { return list.Files[i].Name < list.Files[j].Name })
	writeJSON(w, http.StatusOK, list)
}
