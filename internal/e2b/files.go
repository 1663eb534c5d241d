package e2b

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"path"
	"strconv"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sandboxd/sandboxd/internal/e2b/envd/filesystem"
	"github.com/sandboxd/sandboxd/internal/e2b/envd/filesystem/filesystemconnect"
	"github.com/sandboxd/sandboxd/internal/errdefs"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/session"
	"github.com/sandboxd/sandboxd/internal/workspace"
)

// A sandbox's files are its default session's workspace, which E2B's
// SDKs name /home/user (the E2B user's home, where relative paths start);
// inside the sandbox it is /workspace, so that name is taken too. Every
// operation goes through the workspace's own file API (isolate.Workspace),
// which never follows a symlink the code planted.

// workspaceName maps an E2B path onto a workspace name ("." for the
// workspace itself). Paths elsewhere are refused: the sandbox's system
// directories are the host's, read-only, and not served.
func workspaceName(p string) (string, error) {
	orig := p
	if !strings.HasPrefix(p, "/") {
		p = homeDir + "/" + p
	}
	p = path.Clean(p)
	for _, root := range []string{homeDir, "/workspace"} {
		if p == root {
			return ".", nil
		}
		if rest, ok := strings.CutPrefix(p, root+"/"); ok {
			return rest, nil
		}
	}
	return "", fmt.Errorf("%w: path %s: only files under %s (the sandbox's workspace) are served", errdefs.ErrInvalidArgument, run.Quote(orig, run.MaxName), homeDir)
}

// e2bPath is the E2B path of a workspace name.
func e2bPath(name string) string {
	if name == "." || name == "" {
		return homeDir
	}
	return homeDir + "/" + name
}

// mainSession is the session holding sb's files.
func (s *Server) mainSession(sb *sandbox) (*session.Session, error) {
	sess, err := s.cfg.Sessions.Get(sb.owner, sb.id)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errGone, err)
	}
	return sess, nil
}

// handleHealth is envd's health: 204 while the sandbox's kernel lives.
// Once it is dead (killed at its memory limit) nothing more runs in the
// sandbox, so it is E2B's 502 and isRunning() is false, though the
// sandbox stays listed until it is killed or times out.
func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	sess, err := s.mainSession(sandboxFrom(r.Context()))
	if err == nil {
		if info := sess.Info(); info.State == run.SessionDead {
			err = fmt.Errorf("%w: its kernel is dead: %s", errGone, info.Reason)
		}
	}
	if err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleFileGet sends a workspace file's bytes.
func (s *Server) handleFileGet(w http.ResponseWriter, r *http.Request) {
	sess, err := s.mainSession(sandboxFrom(r.Context()))
	if err != nil {
		writeError(w, err)
		return
	}
	name, err := workspaceName(r.URL.Query().Get("path"))
	if err != nil {
		writeError(w, err)
		return
	}
	f, info, err := sess.OpenFile(name)
	if err != nil {
		writeError(w, err)
		return
	}
	defer f.Close()
	sess.Touch()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(info.Size, 10))
	w.WriteHeader(http.StatusOK)
	_, _ = io.CopyN(w, f, info.Size)
}

// writtenEntry is one file of POST /files's answer.
type writtenEntry struct {
	Name string `json:"name"`
	Type string `json:"type"`
	Path string `json:"path"`
}

// handleFilePost writes files: a multipart form whose "file" parts are
// named by ?path or, without it, by their file names (full paths), or a
// raw body (application/octet-stream) to ?path. Each is streamed to the
// workspace, at most the workspace's size.
func (s *Server) handleFilePost(w http.ResponseWriter, r *http.Request) {
	sess, err := s.mainSession(sandboxFrom(r.Context()))
	if err != nil {
		writeError(w, err)
		return
	}
	sess.Touch()
	put := func(p string, body io.Reader) (writtenEntry, error) {
		name, err := workspaceName(p)
		if err != nil {
			return writtenEntry{}, err
		}
		if _, err := sess.PutFile(name, body, 0o644, int64(sess.Info().Limits.Tmpfs)); err != nil {
			return writtenEntry{}, err
		}
		return writtenEntry{Name: path.Base(name), Type: "file", Path: e2bPath(name)}, nil
	}
	target := r.URL.Query().Get("path")
	ct, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var out []writtenEntry
	if ct != "multipart/form-data" {
		e, err := put(target, r.Body)
		if err != nil {
			writeError(w, err)
			return
		}
		out = append(out, e)
	} else {
		mr := multipart.NewReader(r.Body, params["boundary"])
		for {
			part, err := mr.NextPart()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				writeError(w, fmt.Errorf("%w: the multipart body: %w", errdefs.ErrInvalidArgument, err))
				return
			}
			p := target
			if p == "" {
				// Part.FileName keeps the base name only; the SDK sends
				// the whole path.
				_, dp, _ := mime.ParseMediaType(part.Header.Get("Content-Disposition"))
				p = dp["filename"]
			}
			e, err := put(p, part)
			part.Close()
			if err != nil {
				writeError(w, err)
				return
			}
			out = append(out, e)
		}
	}
	if len(out) == 0 {
		writeError(w, fmt.Errorf("%w: no file in the request: send a multipart form with \"file\" parts", errdefs.ErrInvalidArgument))
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// filesystemService is envd's Filesystem service over a sandbox's
// workspace. Watching and moving are not offered.
type filesystemService struct {
	s *Server
	filesystemconnect.UnimplementedFilesystemHandler
}

// workspaceOf is the workspace of the sandbox a call names, and the
// workspace name of p.
func (f *filesystemService) workspaceOf(ctx context.Context, p string) (*session.Session, string, error) {
	sess, err := f.s.mainSession(sandboxFrom(ctx))
	if err != nil {
		return nil, "", connectError(err)
	}
	name, err := workspaceName(p)
	if err != nil {
		return nil, "", connectError(err)
	}
	sess.Touch()
	return sess, name, nil
}

func (f *filesystemService) Stat(ctx context.Context, req *connect.Request[filesystem.StatRequest]) (*connect.Response[filesystem.StatResponse], error) {
	sess, name, err := f.workspaceOf(ctx, req.Msg.GetPath())
	if err != nil {
		return nil, err
	}
	e, err := stat(sess, name)
	if err != nil {
		return nil, connectError(err)
	}
	return connect.NewResponse(&filesystem.StatResponse{Entry: e}), nil
}

// stat describes one workspace entry, found in its directory's listing.
func stat(sess *session.Session, name string) (*filesystem.EntryInfo, error) {
	if name == "." {
		return &filesystem.EntryInfo{Name: "user", Type: filesystem.FileType_FILE_TYPE_DIRECTORY, Path: homeDir, Mode: 0o755, Permissions: "drwxr-xr-x", Owner: "user", Group: "user"}, nil
	}
	dir := path.Dir(name)
	files, _, err := sess.ListFiles(dir, maxList)
	if err != nil {
		return nil, err
	}
	for _, fi := range files {
		if fi.Name == name {
			return entryInfo(fi), nil
		}
	}
	return nil, fmt.Errorf("%w: %s does not exist", workspace.ErrFileNotFound, run.Quote(e2bPath(name), run.MaxName))
}

// maxList caps the entries one listing reads.
const maxList = 10000

func (f *filesystemService) ListDir(ctx context.Context, req *connect.Request[filesystem.ListDirRequest]) (*connect.Response[filesystem.ListDirResponse], error) {
	sess, name, err := f.workspaceOf(ctx, req.Msg.GetPath())
	if err != nil {
		return nil, err
	}
	depth := max(int(req.Msg.GetDepth()), 1)
	files, _, err := sess.ListFiles(name, maxList)
	if err != nil {
		return nil, connectError(err)
	}
	base := 0
	if name != "." {
		base = strings.Count(name, "/") + 1
	}
	res := &filesystem.ListDirResponse{}
	for _, fi := range files {
		if strings.Count(fi.Name, "/")+1-base <= depth {
			res.Entries = append(res.Entries, entryInfo(fi))
		}
	}
	return connect.NewResponse(res), nil
}

func (f *filesystemService) MakeDir(ctx context.Context, req *connect.Request[filesystem.MakeDirRequest]) (*connect.Response[filesystem.MakeDirResponse], error) {
	sess, name, err := f.workspaceOf(ctx, req.Msg.GetPath())
	if err != nil {
		return nil, err
	}
	created, err := sess.MakeDir(name)
	if err != nil {
		return nil, connectError(err)
	}
	if !created {
		return nil, connect.NewError(connect.CodeAlreadyExists, fmt.Errorf("%s already exists", e2bPath(name)))
	}
	e, err := stat(sess, name)
	if err != nil {
		return nil, connectError(err)
	}
	return connect.NewResponse(&filesystem.MakeDirResponse{Entry: e}), nil
}

// Remove removes a file, or a directory with everything in it: its tree
// is listed and removed from the deepest entry up, each by the
// workspace's RemoveFile, which follows no symlink.
func (f *filesystemService) Remove(ctx context.Context, req *connect.Request[filesystem.RemoveRequest]) (*connect.Response[filesystem.RemoveResponse], error) {
	sess, name, err := f.workspaceOf(ctx, req.Msg.GetPath())
	if err != nil {
		return nil, err
	}
	if name == "." {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("%s is the sandbox's workspace and cannot be removed", homeDir))
	}
	err = sess.RemoveFile(name)
	if errors.Is(err, workspace.ErrDirNotEmpty) {
		var files []workspace.FileInfo
		if files, _, err = sess.ListFiles(name, maxList); err == nil {
			for i := len(files) - 1; i >= 0 && err == nil; i-- {
				err = sess.RemoveFile(files[i].Name)
			}
			if err == nil {
				err = sess.RemoveFile(name)
			}
		}
	}
	if err != nil {
		return nil, connectError(err)
	}
	return connect.NewResponse(&filesystem.RemoveResponse{}), nil
}

// entryInfo is envd's description of a workspace entry.
func entryInfo(fi workspace.FileInfo) *filesystem.EntryInfo {
	mode := fs.FileMode(fi.Mode).Perm()
	e := &filesystem.EntryInfo{
		Name: path.Base(fi.Name), Path: e2bPath(fi.Name), Size: fi.Size, Mode: uint32(mode),
		Owner: "user", Group: "user", ModifiedTime: timestamppb.New(fi.ModTime),
	}
	switch fi.Type {
	case "file":
		e.Type = filesystem.FileType_FILE_TYPE_FILE
	case "dir":
		e.Type = filesystem.FileType_FILE_TYPE_DIRECTORY
		mode |= fs.ModeDir
	case "symlink":
		e.Type = filesystem.FileType_FILE_TYPE_SYMLINK
		mode |= fs.ModeSymlink
	}
	e.Permissions = mode.String()
	return e
}

// connectError maps sandboxd's error classes onto Connect codes, which the
// SDK turns into its errors (NotFound: FileNotFoundError / NotFoundError).
func connectError(err error) error {
	var code connect.Code
	switch {
	case errors.Is(err, errGone):
		code = connect.CodeUnavailable
	case errors.Is(err, errNotOffered):
		code = connect.CodeUnimplemented
	case errors.Is(err, os.ErrNotExist):
		code = connect.CodeNotFound
	default:
		switch errdefs.ClassOf(err) {
		case errdefs.ErrInvalidArgument:
			code = connect.CodeInvalidArgument
		case errdefs.ErrNotFound:
			code = connect.CodeNotFound
		case errdefs.ErrUnauthorized:
			code = connect.CodeUnauthenticated
		case errdefs.ErrExhausted, errdefs.ErrNoSpace, errdefs.ErrTooLarge:
			code = connect.CodeResourceExhausted
		case errdefs.ErrConflict:
			code = connect.CodeFailedPrecondition
		default:
			code = connect.CodeInternal
		}
	}
	return connect.NewError(code, err)
}
