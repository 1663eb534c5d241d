package wasm

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"time"

	"github.com/sandboxd/sandboxd/internal/run"
)

// workspace is a run's directory on the host: a fresh temporary directory
// that holds the input files, is the guest's /workspace, and is removed
// after the run.
type workspace struct {
	dir    string
	inputs map[string]fileStamp
	bytes  int64
	files  int64
}

type fileStamp struct {
	size  int64
	mtime time.Time
}

func newRunID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// newWorkspace creates the directory and writes the input files through an
// os.Root, so no name can leave it. Names follow the process backend's
// rules (see cleanName).
func newWorkspace(tmp, id string, files []run.File) (*workspace, error) {
	dir, err := os.MkdirTemp(tmp, "sandboxd-wasm-"+id+"-")
	if err != nil {
		return nil, fmt.Errorf("create workspace: %w", err)
	}
	w := &workspace{dir: dir, inputs: map[string]fileStamp{}}
	if err := w.write(files); err != nil {
		w.remove()
		return nil, err
	}
	return w, nil
}

func (w *workspace) write(files []run.File) error {
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
				return fmt.Errorf("%w: write %s: %w", ErrInvalid, name, err)
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
			return fmt.Errorf("%w: write %s: %w", ErrInvalid, name, err)
		}
		// WriteFile's mode is filtered by the umask.
		if err := root.Chmod(name, mode); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
		st, err := root.Lstat(name)
		if err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
		w.inputs[name] = fileStamp{size: st.Size(), mtime: st.ModTime()}
		w.bytes += st.Size()
		w.files++
	}
	return nil
}

func (w *workspace) remove() error {
	if err := os.RemoveAll(w.dir); err != nil {
		return fmt.Errorf("remove workspace: %w", err)
	}
	return nil
}

// maxWalk bounds the directory entries collect looks at, as in the process
// backend.
const maxWalk = 10000

// collect returns the regular files the run created or changed, sorted by
// name, with the process backend's rules: symlinks and special files are
// skipped, never followed (the guest cannot make symlinks here anyway, see
// workspaceFS); unchanged inputs are left out; files past the caps are
// listed with Size but no Content, and truncated is set. It runs after the
// guest is gone, through an os.Root, opening each file with O_NOFOLLOW.
func (w *workspace) collect(cl CollectLimits) (files []run.OutputFile, truncated bool, err error) {
	root, err := os.OpenRoot(w.dir)
	if err != nil {
		return nil, false, fmt.Errorf("collect workspace files: %w", err)
	}
	defer root.Close()
	var total int64
	visited := 0
	var walk func(dir string, depth int) error
	walk = func(dir string, depth int) error {
		if depth > 32 || visited > maxWalk {
			truncated = true
			return nil
		}
		d, err := root.Open(dir)
		if err != nil {
			return err
		}
		ents, err := d.ReadDir(-1)
		d.Close()
		if err != nil {
			return err
		}
		sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
		for _, e := range ents {
			if visited++; visited > maxWalk {
				truncated = true
				return nil
			}
			name := path.Join(dir, e.Name())
			switch {
			case e.Type().IsDir():
				if err := walk(name, depth+1); err != nil {
					return err
				}
				continue
			case !e.Type().IsRegular():
				continue // symlinks, fifos, sockets: never followed or read
			}
			if len(files) >= cl.MaxFiles {
				truncated = true
				return nil
			}
			f, keep, err := w.readFile(root, name, cl, &total)
			if err != nil {
				return err
			}
			if f.Content == nil && f.Size > 0 {
				truncated = true
			}
			if keep {
				files = append(files, f)
			}
		}
		return nil
	}
	if err := walk(".", 0); err != nil {
		return files, truncated, fmt.Errorf("collect workspace files: %w", err)
	}
	return files, truncated, nil
}

func (w *workspace) readFile(root *os.Root, name string, cl CollectLimits, total *int64) (run.OutputFile, bool, error) {
	fh, err := root.OpenFile(name, os.O_RDONLY|noFollow, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || isLoop(err) {
			return run.OutputFile{}, false, nil
		}
		return run.OutputFile{}, false, err
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return run.OutputFile{}, false, err
	}
	if !st.Mode().IsRegular() {
		return run.OutputFile{}, false, nil
	}
	if in, ok := w.inputs[name]; ok && in.size == st.Size() && in.mtime.Equal(st.ModTime()) {
		return run.OutputFile{}, false, nil // an input, unchanged
	}
	f := run.OutputFile{Name: name, Size: st.Size(), Mode: uint32(st.Mode().Perm())}
	if st.Size() > cl.MaxFileSize || *total+st.Size() > cl.MaxTotal {
		return f, true, nil
	}
	b, err := io.ReadAll(io.LimitReader(fh, cl.MaxFileSize+1))
	if err != nil {
		return run.OutputFile{}, false, err
	}
	if int64(len(b)) > cl.MaxFileSize {
		return f, true, nil
	}
	*total += int64(len(b))
	f.Content = b
	if f.Content == nil {
		f.Content = []byte{}
	}
	return f, true, nil
}
