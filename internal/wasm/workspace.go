package wasm

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"

	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/workspace"
)

// workspace is a run's directory on the host: a fresh temporary directory
// that holds the input files, is the guest's /workspace, and is removed
// after the run.
type workdir struct {
	dir    string
	inputs map[string]workspace.FileStamp
	bytes  int64
	files  int64
}

func newRunID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// newWorkspace creates the directory and writes the input files through an
// os.Root, so no name can leave it. Names follow the process backend's
// rules (see cleanName).
func newWorkspace(tmp, id string, files []run.File) (*workdir, error) {
	dir, err := os.MkdirTemp(tmp, "sandboxd-wasm-"+id+"-")
	if err != nil {
		return nil, fmt.Errorf("create workspace: %w", err)
	}
	w := &workdir{dir: dir, inputs: map[string]workspace.FileStamp{}}
	if err := w.write(files); err != nil {
		w.remove()
		return nil, err
	}
	return w, nil
}

func (w *workdir) write(files []run.File) error {
	if len(files) == 0 {
		return nil
	}
	root, err := os.OpenRoot(w.dir)
	if err != nil {
		return fmt.Errorf("open workspace: %w", err)
	}
	defer root.Close()
	for _, f := range files {
		name, err := cleanName(f.Name)
		if err != nil {
			return err
		}
		if d := path.Dir(name); d != "." {
			if err := root.MkdirAll(d, 0o755); err != nil {
				return fmt.Errorf("%w: write %s: %w", ErrInvalid, run.Quote(name, run.MaxName), err)
			}
			for ; d != "."; d = path.Dir(d) {
				w.files++
			}
		}
		mode := os.FileMode(f.Mode & 0o777)
		if mode == 0 {
			mode = 0o644
		}
		if err := root.WriteFile(name, f.Content, mode); err != nil {
			return fmt.Errorf("%w: write %s: %w", ErrInvalid, run.Quote(name, run.MaxName), err)
		}
		// WriteFile's mode is filtered by the umask.
		if err := root.Chmod(name, mode); err != nil {
			return fmt.Errorf("write %s: %w", run.Quote(name, run.MaxName), err)
		}
		st, err := root.Lstat(name)
		if err != nil {
			return fmt.Errorf("write %s: %w", run.Quote(name, run.MaxName), err)
		}
		w.inputs[name] = workspace.FileStamp{Size: st.Size(), MTime: st.ModTime()}
		w.bytes += st.Size()
		w.files++
	}
	return nil
}

func (w *workdir) remove() error {
	if err := os.RemoveAll(w.dir); err != nil {
		return fmt.Errorf("remove workspace: %w", err)
	}
	return nil
}

// collect returns the regular files the run created or changed, with the
// process backend's rules (workspace.CollectFiles), after the guest is gone:
// through an os.Root, each file opened with O_NOFOLLOW (the guest cannot
// make symlinks here anyway, see workspaceFS).
func (w *workdir) collect(cl workspace.CollectLimits) ([]run.OutputFile, bool, error) {
	root, err := os.OpenRoot(w.dir)
	if err != nil {
		return nil, false, fmt.Errorf("collect workspace files: %w", err)
	}
	defer root.Close()
	open := func(name string, dir bool) (*os.File, error) {
		if dir {
			return root.Open(name)
		}
		fh, err := root.OpenFile(name, os.O_RDONLY|noFollow, 0)
		if errors.Is(err, fs.ErrNotExist) || isLoop(err) {
			return nil, nil
		}
		return fh, err
	}
	files, truncated, err := workspace.CollectFiles(open, w.inputs, cl)
	if err != nil {
		return files, truncated, fmt.Errorf("collect workspace files: %w", err)
	}
	return files, truncated, nil
}
