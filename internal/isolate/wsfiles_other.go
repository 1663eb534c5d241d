//go:build !linux

package isolate

import (
	"io"
	"os"

	"github.com/sandboxd/sandboxd/internal/workspace"
)

func (w *Workspace) PutFile(string, io.Reader, os.FileMode, int64) (int64, error) {
	return 0, ErrUnsupported
}
func (w *Workspace) OpenFile(string) (*os.File, workspace.FileInfo, error) {
	return nil, workspace.FileInfo{}, ErrUnsupported
}
func (w *Workspace) RemoveFile(string) error      { return ErrUnsupported }
func (w *Workspace) MakeDir(string) (bool, error) { return false, ErrUnsupported }
func (w *Workspace) ListFiles(string, int) ([]workspace.FileInfo, bool, error) {
	return nil, false, ErrUnsupported
}
