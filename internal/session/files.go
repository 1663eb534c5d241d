package session

import (
	"cmp"
	"fmt"
	"io"
	"os"

	"github.com/sandboxd/sandboxd/internal/isolate"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/workspace"
)

// The file API of a session's workspace, for the front ends. A session's
// workspace lives as long as its kernel: when the kernel dies, the
// workspace is removed at once (see free), so these answer ErrDead, with
// why the kernel died, from then on. An operation that races the death
// (its workspace vanishing under it) answers the same.

// PutFile writes r to the workspace file name (see
// isolate.SessionProcess.PutFile): the pages are charged to the session's
// memory cgroup, as the kernel's own writes are.
func (s *Session) PutFile(name string, r io.Reader, mode os.FileMode, maxBytes int64) (n int64, err error) {
	err = s.withFiles(func(*isolate.Workspace) error {
		// The filler runs in the session's cgroup: at the least weight of
		// an idle session, a busy host would starve the upload.
		defer s.busy()()
		n, err = s.proc.PutFile(name, r, mode, maxBytes)
		return err
	})
	return n, err
}

// OpenFile opens the workspace's regular file name for reading.
func (s *Session) OpenFile(name string) (f *os.File, info workspace.FileInfo, err error) {
	err = s.withFiles(func(ws *isolate.Workspace) error {
		f, info, err = ws.OpenFile(name)
		return err
	})
	return f, info, err
}

// RemoveFile removes a workspace file, symlink or empty directory.
func (s *Session) RemoveFile(name string) error {
	return s.withFiles(func(ws *isolate.Workspace) error { return ws.RemoveFile(name) })
}

// ListFiles lists the workspace's tree under dir.
func (s *Session) ListFiles(dir string, maxEntries int) (files []workspace.FileInfo, truncated bool, err error) {
	err = s.withFiles(func(ws *isolate.Workspace) error {
		files, truncated, err = ws.ListFiles(dir, maxEntries)
		return err
	})
	return files, truncated, err
}

// MakeDir creates the workspace directory name and its missing parents;
// created is false when it was a directory already.
func (s *Session) MakeDir(name string) (created bool, err error) {
	err = s.withFiles(func(ws *isolate.Workspace) error {
		created, err = ws.MakeDir(name)
		return err
	})
	return created, err
}

// withFiles runs op on the workspace of a live session. On a dead one, or
// when op failed because the session died meanwhile, it is ErrDead.
func (s *Session) withFiles(op func(ws *isolate.Workspace) error) error {
	if err := s.deadErr(); err != nil {
		return err
	}
	err := op(s.ws)
	if err != nil {
		if derr := s.deadErr(); derr != nil {
			return derr
		}
	}
	return err
}

// deadErr is ErrDead, saying why, once the kernel is gone or the session
// closed; nil while it lives.
func (s *Session) deadErr() error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if !closed {
		select {
		case <-s.proc.Done():
		default:
			return nil
		}
	}
	s.mu.Lock()
	reason := cmp.Or(s.reason, s.spent)
	s.mu.Unlock()
	if reason == "" {
		// A cell's death whose cell has not yet said why.
		res, _ := s.proc.Wait()
		reason = s.deathReason(res)
	}
	return fmt.Errorf("%w: %s; its workspace files were removed with it", ErrDead, run.Clip(reason, run.MaxMessage))
}
