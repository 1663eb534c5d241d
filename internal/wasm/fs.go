package wasm

import (
	"io"
	"io/fs"
	"sync"
	"sync/atomic"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
)

// workspaceFS is the guest's /workspace: wazero's DirFS over the run's
// host directory, changed in three ways.
//
//   - No symlinks. DirFS hands guest paths to the host's open(2), which
//     follows symlinks: a relative link such as "../../../etc/passwd" made
//     by the guest would be followed out of the workspace (wazero refuses
//     absolute targets only). Symlink fails with EPERM, so no symlink ever
//     exists in a workspace: inputs are regular files.
//   - No hard links (EPERM): the quota counts each file once.
//   - A quota, as the process backend's size-capped tmpfs: the bytes of all
//     files (Limits.Tmpfs), the bytes of any one file (Limits.FileSize), and
//     the number of files and directories (the tmpfs's inode count). A
//     write past one fails with EIO, which is what wazero reports for a
//     full disk too: WASI's errno set as wazero exposes it has no ENOSPC
//     or EFBIG.
//
// Every file the guest opens, here or in a read-only mount (countingFS),
// is a host file descriptor of the process running the guest; their number
// is capped by Limits.OpenFiles (EIO past it: there is no EMFILE either),
// so a guest cannot exhaust the host's descriptors.
//
// The guest runs one thread, so the check-then-act sequences below do not
// race with other guest operations.
type workspaceFS struct {
	experimentalsys.FS
	q *quota
}

// quota is the space a workspace may use, and what it uses.
type quota struct {
	mu                 sync.Mutex
	maxBytes, maxFile  int64
	maxEntries         int64
	usedBytes, entries int64
	// hit is set when a write or create was refused for the quota.
	hit bool
	// open counts the files the guest has open, up to maxOpen.
	open, maxOpen int64
	// dirty is set by the first operation that may change the workspace:
	// a run that never sets it produced no files, and collecting them is
	// skipped.
	dirty bool
}

func (q *quota) touch() {
	q.mu.Lock()
	q.dirty = true
	q.mu.Unlock()
}

func (q *quota) wasTouched() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.dirty
}

// reserve accounts for a file growing from size to end, refusing it past
// the quota or the file size cap.
func (q *quota) reserve(size, end int64) bool {
	if end <= size {
		return true
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if end > q.maxFile || q.usedBytes+(end-size) > q.maxBytes {
		q.hit = true
		return false
	}
	q.usedBytes += end - size
	return true
}

// release accounts for n bytes freed.
func (q *quota) release(n int64) {
	q.mu.Lock()
	q.usedBytes = max(q.usedBytes-n, 0)
	q.mu.Unlock()
}

// addEntry accounts for a new file or directory.
func (q *quota) addEntry() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.entries >= q.maxEntries {
		q.hit = true
		return false
	}
	q.entries++
	return true
}

func (q *quota) dropEntry() {
	q.mu.Lock()
	q.entries = max(q.entries-1, 0)
	q.mu.Unlock()
}

// openFile accounts for a file the guest opens.
func (q *quota) openFile() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.open >= q.maxOpen {
		q.hit = true
		return false
	}
	q.open++
	return true
}

func (q *quota) closeFile() {
	q.mu.Lock()
	q.open = max(q.open-1, 0)
	q.mu.Unlock()
}

func (q *quota) wasHit() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.hit
}

func (w *workspaceFS) OpenFile(path string, flag experimentalsys.Oflag, perm fs.FileMode) (experimentalsys.File, experimentalsys.Errno) {
	if writable(flag) || flag&(experimentalsys.O_CREAT|experimentalsys.O_TRUNC) != 0 {
		w.q.touch()
	}
	if !w.q.openFile() {
		return nil, experimentalsys.EIO
	}
	st, errno := w.FS.Lstat(path)
	exists := errno == 0
	if !exists && flag&experimentalsys.O_CREAT != 0 {
		if !w.q.addEntry() {
			w.q.closeFile()
			return nil, experimentalsys.EIO
		}
	}
	f, errno := w.FS.OpenFile(path, flag, perm)
	if errno != 0 {
		if !exists && flag&experimentalsys.O_CREAT != 0 {
			w.q.dropEntry()
		}
		w.q.closeFile()
		return nil, errno
	}
	if exists && st.Mode.IsRegular() && flag&experimentalsys.O_TRUNC != 0 && writable(flag) {
		w.q.release(st.Size)
	}
	return &quotaFile{File: f, q: w.q}, 0
}

func writable(flag experimentalsys.Oflag) bool {
	return flag&(experimentalsys.O_WRONLY|experimentalsys.O_RDWR) != 0
}

func (w *workspaceFS) Mkdir(path string, perm fs.FileMode) experimentalsys.Errno {
	w.q.touch()
	if !w.q.addEntry() {
		return experimentalsys.EIO
	}
	errno := w.FS.Mkdir(path, perm)
	if errno != 0 {
		w.q.dropEntry()
	}
	return errno
}

func (w *workspaceFS) Rmdir(path string) experimentalsys.Errno {
	w.q.touch()
	errno := w.FS.Rmdir(path)
	if errno == 0 {
		w.q.dropEntry()
	}
	return errno
}

func (w *workspaceFS) Unlink(path string) experimentalsys.Errno {
	w.q.touch()
	st, serr := w.FS.Lstat(path)
	errno := w.FS.Unlink(path)
	if errno == 0 {
		w.q.dropEntry()
		if serr == 0 && st.Mode.IsRegular() {
			// An unlinked file still open keeps its blocks on the host
			// until closed; growing it is still counted, so the quota
			// errs on the side of counting too much.
			w.q.release(st.Size)
		}
	}
	return errno
}

func (w *workspaceFS) Rename(from, to string) experimentalsys.Errno {
	w.q.touch()
	st, serr := w.FS.Lstat(to)
	errno := w.FS.Rename(from, to)
	if errno == 0 && serr == 0 {
		// The target was replaced.
		w.q.dropEntry()
		if st.Mode.IsRegular() {
			w.q.release(st.Size)
		}
	}
	return errno
}

func (w *workspaceFS) Link(oldPath, newPath string) experimentalsys.Errno {
	return experimentalsys.EPERM
}

func (w *workspaceFS) Symlink(oldPath, linkName string) experimentalsys.Errno {
	return experimentalsys.EPERM
}

// quotaFile is an open regular file of the workspace: writes that would
// grow it are checked against the quota first.
type quotaFile struct {
	experimentalsys.File
	q *quota
}

// grow checks that the file may grow to end bytes, and accounts for it;
// past the quota the write fails whole with EIO, as on a full disk.
func (f *quotaFile) grow(end int64) experimentalsys.Errno {
	st, errno := f.File.Stat()
	if errno != 0 {
		return errno
	}
	if !f.q.reserve(st.Size, end) {
		return experimentalsys.EIO
	}
	return 0
}

func (f *quotaFile) Write(buf []byte) (int, experimentalsys.Errno) {
	var off int64
	if f.File.IsAppend() {
		st, errno := f.File.Stat()
		if errno != 0 {
			return 0, errno
		}
		off = st.Size
	} else {
		var errno experimentalsys.Errno
		if off, errno = f.File.Seek(0, io.SeekCurrent); errno != 0 {
			return 0, errno
		}
	}
	if errno := f.grow(off + int64(len(buf))); errno != 0 {
		return 0, errno
	}
	return f.File.Write(buf)
}

func (f *quotaFile) Pwrite(buf []byte, off int64) (int, experimentalsys.Errno) {
	if errno := f.grow(off + int64(len(buf))); errno != 0 {
		return 0, errno
	}
	return f.File.Pwrite(buf, off)
}

func (f *quotaFile) Truncate(size int64) experimentalsys.Errno {
	st, errno := f.File.Stat()
	if errno != 0 {
		return errno
	}
	if size > st.Size {
		if !f.q.reserve(st.Size, size) {
			return experimentalsys.EIO
		}
	}
	errno = f.File.Truncate(size)
	if errno == 0 && size < st.Size {
		f.q.release(st.Size - size)
	}
	return errno
}

func (w *workspaceFS) Chmod(path string, perm fs.FileMode) experimentalsys.Errno {
	w.q.touch()
	return w.FS.Chmod(path, perm)
}

func (w *workspaceFS) Utimens(path string, atim, mtim int64) experimentalsys.Errno {
	w.q.touch()
	return w.FS.Utimens(path, atim, mtim)
}

func (f *quotaFile) Close() experimentalsys.Errno {
	f.q.closeFile()
	return f.File.Close()
}

// rootFS is a mount as wazero opens its root: lazily, once, by
// OpenFile(".", O_RDONLY, 0). That open was charged up front (see
// guestConfig), so the first one of that form is not counted again: it
// goes to raw, the FS under the counting layer. Any later one counts, as
// the guest's own, so a guest cannot open its mount's root uncounted more
// than once.
type rootFS struct {
	experimentalsys.FS
	raw     experimentalsys.FS
	charged atomic.Bool
}

func (r *rootFS) OpenFile(path string, flag experimentalsys.Oflag, perm fs.FileMode) (experimentalsys.File, experimentalsys.Errno) {
	if path == "." && flag == experimentalsys.O_RDONLY && perm == 0 && r.charged.CompareAndSwap(false, true) {
		return r.raw.OpenFile(path, flag, perm)
	}
	return r.FS.OpenFile(path, flag, perm)
}

// countingFS is a read-only mount whose open files count against the
// guest's open-file cap.
type countingFS struct {
	experimentalsys.FS
	q *quota
}

func (c *countingFS) OpenFile(path string, flag experimentalsys.Oflag, perm fs.FileMode) (experimentalsys.File, experimentalsys.Errno) {
	if !c.q.openFile() {
		return nil, experimentalsys.EIO
	}
	f, errno := c.FS.OpenFile(path, flag, perm)
	if errno != 0 {
		c.q.closeFile()
		return nil, errno
	}
	return &countedFile{File: f, q: c.q}, 0
}

// countedFile gives its slot back when closed.
type countedFile struct {
	experimentalsys.File
	q *quota
}

func (f *countedFile) Close() experimentalsys.Errno {
	f.q.closeFile()
	return f.File.Close()
}

func (f *quotaFile) Utimens(atim, mtim int64) experimentalsys.Errno {
	f.q.touch()
	return f.File.Utimens(atim, mtim)
}
