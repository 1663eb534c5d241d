package workspace

import (
	"io"
	"os"
	"path"
	"sort"
	"time"

	"github.com/sandboxd/sandboxd/internal/run"
)

// maxWalk bounds the directory entries a collection looks at: a program
// can make far more (empty) directories than files worth returning.
const maxWalk = 10000

// Opener opens a workspace-relative name beneath the workspace without
// following any symlink (openat2 here, os.Root in the wasm backend). It
// returns (nil, nil) for an entry to skip: gone, or a link.
type Opener func(name string, dir bool) (*os.File, error)

// FileStamp is an input file's size and mtime when it was written: an
// input still the same is not a produced file.
type FileStamp struct {
	Size  int64
	MTime time.Time
}

// CollectFiles returns the regular files of a finished run's workspace
// that are not unchanged inputs, sorted by name; both backends use it.
// Symlinks, fifos and sockets are skipped, never followed or read; the
// reserved directory is left out. Files past the caps are listed with Size
// but no Content, and truncated is set.
func CollectFiles(open Opener, inputs map[string]FileStamp, cl CollectLimits) (files []run.OutputFile, truncated bool, err error) {
	var total int64
	visited := 0
	var walk func(dir string, depth int) error
	walk = func(dir string, depth int) error {
		if depth > MaxDepth || visited > maxWalk {
			truncated = true
			return nil
		}
		d, err := open(dir, true)
		if err != nil || d == nil {
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
			case name == ReservedDir:
				continue
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
			f, keep, err := readProduced(open, name, inputs, cl, &total)
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
	err = walk(".", 0)
	return files, truncated, err
}

func readProduced(open Opener, name string, inputs map[string]FileStamp, cl CollectLimits, total *int64) (run.OutputFile, bool, error) {
	fh, err := open(name, false)
	if err != nil || fh == nil {
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
	if in, ok := inputs[name]; ok && in.Size == st.Size() && in.MTime.Equal(st.ModTime()) {
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
