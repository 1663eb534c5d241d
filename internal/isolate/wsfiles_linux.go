package isolate

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/sandboxd/sandboxd/internal/workspace"
	"golang.org/x/sys/unix"
)

// The file operations below serve a session's file API while its program
// may be running. That program owns the workspace and can, at any moment,
// replace any entry with a symlink to a host path, a fifo, a socket or a
// deep tree. So every path is resolved beneath an fd of the workspace root
// with openat2 (see openIn), one directory fd at a time, and every entry is
// checked through its own fd before use: a symlink is never followed,
// nothing outside the workspace is ever opened, and no open can block.
// A path (w.local(), the workspace as this process reaches it) is used for
// the root alone.
//
// The operations only read the Workspace's immutable fields: they are safe
// to call concurrently with each other and with running programs, but not
// with Close.

// maxListDepth is how many levels below its directory ListFiles descends.
const maxListDepth = workspace.MaxDepth

// PutFile writes r to name, creating the missing parent directories, and
// replaces a regular file already there. The file and the directories it
// creates are owned by the sandbox user; mode's permission bits are kept
// (0 means 0644). It returns the number of bytes written.
//
// More than maxBytes bytes is workspace.ErrFileTooLarge and a full workspace is
// workspace.ErrFull; either way, as on every failed write, the file is
// removed (a file it replaced is gone too). A symlink anywhere in name, or
// a final entry that is not a regular file, is workspace.ErrNotRegular and left as it
// is.
func (w *Workspace) PutFile(name string, r io.Reader, mode os.FileMode, maxBytes int64) (int64, error) {
	return w.putFile(name, r, mode, maxBytes, copyInto)
}

// writer copies r into the open file f and says how many bytes it wrote:
// copyInto does it in this process, SessionProcess.fillCharged in a
// sandbox's memory cgroup.
type writer func(f *os.File, r io.Reader) (int64, error)

func copyInto(f *os.File, r io.Reader) (int64, error) { return io.Copy(f, r) }

// putFile is PutFile with the bytes written by write.
func (w *Workspace) putFile(name string, r io.Reader, mode os.FileMode, maxBytes int64, write writer) (int64, error) {
	nf, err := w.createFile(name, mode)
	if err != nil {
		return 0, err
	}
	defer nf.release()
	n, err := write(nf.File, io.LimitReader(r, max(maxBytes, 0)))
	if err == nil && n == maxBytes {
		// The cap is reached: one more byte makes the upload too large.
		var b [1]byte
		switch _, rerr := io.ReadFull(r, b[:]); {
		case rerr == nil:
			err = fmt.Errorf("put %q: %w: longer than %d bytes", nf.name, workspace.ErrFileTooLarge, maxBytes)
		case rerr != io.EOF:
			err = rerr
		}
	}
	if cerr := nf.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		nf.remove()
	}
	switch {
	case errors.Is(err, workspace.ErrFileTooLarge):
		return 0, err
	case err != nil:
		return 0, fileError("put", nf.name, err)
	}
	return n, nil
}

// newFile is a regular file createFile made, open for writing.
type newFile struct {
	*os.File
	name  string
	dirfd int
	base  string
	st    unix.Stat_t
}

// remove removes the file if the name is still it: after a failed write,
// the program may have put its own entry under that name.
func (nf *newFile) remove() { removeIfSame(nf.dirfd, nf.base, &nf.st) }

// release closes what createFile opened besides the file.
func (nf *newFile) release() { unix.Close(nf.dirfd) }

// createFile creates (or truncates) the regular file name, with its
// missing parent directories, and gives it to the sandbox user with
// mode's permission bits (0 means 0644). A symlink anywhere in name, or a
// final entry that is not a regular file, is workspace.ErrNotRegular.
// The caller closes the file and releases the newFile.
func (w *Workspace) createFile(name string, mode os.FileMode) (*newFile, error) {
	name, err := workspace.CleanName(name)
	if err != nil {
		return nil, err
	}
	rootfd, err := w.openRoot()
	if err != nil {
		return nil, err
	}
	defer unix.Close(rootfd)
	dirfd, err := w.mkdirAllAt(rootfd, path.Dir(name))
	if err != nil {
		return nil, fileError("put", name, err)
	}
	nf := &newFile{name: name, dirfd: dirfd, base: path.Base(name)}
	// O_NONBLOCK: opening a fifo for writing fails (ENXIO) instead of
	// waiting for a reader.
	fd, err := openSub(dirfd, nf.base, name, unix.O_CREAT|unix.O_WRONLY|unix.O_TRUNC|unix.O_NONBLOCK)
	if err != nil {
		unix.Close(dirfd)
		return nil, fileError("put", name, err)
	}
	if err := w.ownNew(fd, nf, mode); err != nil {
		unix.Close(fd)
		unix.Close(dirfd)
		return nil, err
	}
	nf.File = os.NewFile(uintptr(fd), name)
	return nf, nil
}

// ownNew checks that fd, just opened for nf, is a regular file, makes it
// blocking and gives it to the sandbox user with mode's permission bits.
func (w *Workspace) ownNew(fd int, nf *newFile, mode os.FileMode) error {
	if err := unix.Fstat(fd, &nf.st); err != nil {
		return fileError("put", nf.name, &os.PathError{Op: "fstat", Path: nf.name, Err: err})
	}
	if nf.st.Mode&unix.S_IFMT != unix.S_IFREG {
		return typeError("put", nf.name, nf.st.Mode)
	}
	perm := uint32(mode.Perm())
	if perm == 0 {
		perm = 0o644
	}
	uid, gid := w.owner()
	op, err := "fcntl", unix.SetNonblock(fd, false)
	if err == nil {
		op, err = "fchown", unix.Fchown(fd, uid, gid)
	}
	if err == nil {
		op, err = "fchmod", unix.Fchmod(fd, perm)
	}
	if err != nil {
		nf.remove()
		return fileError("put", nf.name, &os.PathError{Op: op, Path: nf.name, Err: err})
	}
	return nil
}

// OpenFile opens the regular file name for reading. A symlink anywhere in
// name, a fifo, a socket, a device or a directory is workspace.ErrNotRegular; none is
// followed, and opening never blocks. A missing file is workspace.ErrFileNotFound.
func (w *Workspace) OpenFile(name string) (*os.File, workspace.FileInfo, error) {
	name, err := workspace.CleanName(name)
	if err != nil {
		return nil, workspace.FileInfo{}, err
	}
	rootfd, err := w.openRoot()
	if err != nil {
		return nil, workspace.FileInfo{}, err
	}
	defer unix.Close(rootfd)
	// O_NONBLOCK: opening a fifo returns at once (to be refused below)
	// instead of waiting for a writer.
	fd, err := openIn(rootfd, name, unix.O_RDONLY|unix.O_NONBLOCK)
	if err != nil {
		return nil, workspace.FileInfo{}, fileError("open", name, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, workspace.FileInfo{}, fileError("open", name, &os.PathError{Op: "fstat", Path: name, Err: err})
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, workspace.FileInfo{}, typeError("open", name, st.Mode)
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, workspace.FileInfo{}, fileError("open", name, &os.PathError{Op: "fcntl", Path: name, Err: err})
	}
	return os.NewFile(uintptr(fd), name), fileInfo(name, &st), nil
}

// RemoveFile removes a file, a symlink (the link, never its target) or an
// empty directory. A missing entry is workspace.ErrFileNotFound, a directory with
// entries workspace.ErrDirNotEmpty, a symlink among name's parents workspace.ErrNotRegular.
func (w *Workspace) RemoveFile(name string) error {
	name, err := workspace.CleanName(name)
	if err != nil {
		return err
	}
	rootfd, err := w.openRoot()
	if err != nil {
		return err
	}
	defer unix.Close(rootfd)
	dirfd, err := openIn(rootfd, path.Dir(name), unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return fileError("remove", name, err)
	}
	defer unix.Close(dirfd)
	// Unlink first and rmdir only if it is a directory, rather than stat
	// and then choose: the program may swap the entry in between. Neither
	// call follows a symlink.
	base := path.Base(name)
	err = unix.Unlinkat(dirfd, base, 0)
	if errors.Is(err, unix.EISDIR) {
		err = unix.Unlinkat(dirfd, base, unix.AT_REMOVEDIR)
	}
	if err != nil {
		return fileError("remove", name, &os.PathError{Op: "unlinkat", Path: name, Err: err})
	}
	return nil
}

// MakeDir creates the directory name and its missing parents, owned by
// the sandbox user; created is false when it was already a directory. An
// element that exists as anything else, or a symlink among them, is an
// error, and nothing is followed.
func (w *Workspace) MakeDir(name string) (created bool, err error) {
	name, err = workspace.CleanName(name)
	if err != nil {
		return false, err
	}
	rootfd, err := w.openRoot()
	if err != nil {
		return false, err
	}
	defer unix.Close(rootfd)
	if fd, err := openIn(rootfd, name, unix.O_PATH|unix.O_DIRECTORY); err == nil {
		unix.Close(fd)
		return false, nil
	}
	fd, err := w.mkdirAllAt(rootfd, name)
	if err != nil {
		return false, fileError("mkdir", name, err)
	}
	unix.Close(fd)
	return true, nil
}

// ListFiles lists the tree under dir ("" or "." for the whole workspace),
// at most maxEntries entries, in path order (a directory right before its
// entries) down to maxListDepth levels. truncated says that entries were
// left out, or that a directory that deep was not looked into. Symlinks
// are listed, never followed; the reserved internal directory is not
// listed. A symlink in dir itself is workspace.ErrNotRegular.
func (w *Workspace) ListFiles(dir string, maxEntries int) (files []workspace.FileInfo, truncated bool, err error) {
	if dir == "" {
		dir = "."
	}
	if dir != "." {
		if dir, err = workspace.CleanName(dir); err != nil {
			return nil, false, err
		}
	}
	rootfd, err := w.openRoot()
	if err != nil {
		return nil, false, err
	}
	defer unix.Close(rootfd)
	fd, err := openIn(rootfd, dir, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return nil, false, fileError("list", dir, err)
	}
	l := lister{max: maxEntries}
	err = l.walk(fd, dir, 1)
	return l.files, l.truncated, err
}

// lister is one ListFiles walk.
type lister struct {
	files     []workspace.FileInfo
	max       int
	truncated bool
}

// walk lists the directory open at fd, named rel, whose entries are depth
// levels below the listed one; it closes fd.
func (l *lister) walk(fd int, rel string, depth int) error {
	d := os.NewFile(uintptr(fd), rel)
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return fileError("list", rel, err)
	}
	slices.Sort(names)
	for _, base := range names {
		if rel == "." && base == workspace.ReservedDir {
			continue
		}
		if len(l.files) >= l.max {
			l.truncated = true
			return nil
		}
		name := path.Join(rel, base)
		var st unix.Stat_t
		if err := unix.Fstatat(fd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue // removed since the directory was read
			}
			return fileError("list", name, &os.PathError{Op: "fstatat", Path: name, Err: err})
		}
		l.files = append(l.files, fileInfo(name, &st))
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		if depth >= maxListDepth {
			l.truncated = true
			continue
		}
		sub, err := openSub(fd, base, name, unix.O_RDONLY|unix.O_DIRECTORY)
		switch {
		case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ELOOP), errors.Is(err, unix.ENOTDIR):
			continue // replaced since the fstatat: list it as it was
		case err != nil:
			return fileError("list", name, err)
		}
		if err := l.walk(sub, name, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// openRoot opens the workspace root, the base of every resolution. It
// must be the workspace's own tmpfs: after Close detached it, the path
// names the directory under it on the host's file system, which no file
// operation may write into (a session's file API can race its deletion).
// Once opened, the fd keeps the tmpfs, detached or not.
func (w *Workspace) openRoot() (int, error) {
	fd, err := unix.Open(w.local(), unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open workspace: %w: %w", workspace.ErrFileNotFound, &os.PathError{Op: "open", Path: w.work, Err: err})
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Dev != w.dev {
		unix.Close(fd)
		return -1, fmt.Errorf("open workspace: %w: it has been removed", workspace.ErrFileNotFound)
	}
	return fd, nil
}

// mkdirAllAt opens dir beneath rootfd one element at a time, creating the
// missing directories owned by the sandbox user. An element that exists
// must be a directory, not a symlink to one.
func (w *Workspace) mkdirAllAt(rootfd int, dir string) (int, error) {
	fd, err := openIn(rootfd, ".", unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil || dir == "." {
		return fd, err
	}
	uid, gid := w.owner()
	rel := ""
	for _, elem := range strings.Split(dir, "/") {
		rel = path.Join(rel, elem)
		err := unix.Mkdirat(fd, elem, 0o755)
		created := err == nil
		if err != nil && !errors.Is(err, unix.EEXIST) {
			unix.Close(fd)
			return -1, &os.PathError{Op: "mkdirat", Path: rel, Err: err}
		}
		next, err := openSub(fd, elem, rel, unix.O_RDONLY|unix.O_DIRECTORY)
		unix.Close(fd)
		if err != nil {
			return -1, err
		}
		fd = next
		if !created {
			continue
		}
		// Through the fd: the name may already be someone else's.
		if err := unix.Fchown(fd, uid, gid); err != nil {
			unix.Close(fd)
			return -1, &os.PathError{Op: "fchown", Path: rel, Err: err}
		}
		if err := unix.Fchmod(fd, 0o755); err != nil {
			unix.Close(fd)
			return -1, &os.PathError{Op: "fchmod", Path: rel, Err: err}
		}
	}
	return fd, nil
}

// openSub is openIn for a name beneath dirfd, with rel, its path from the
// workspace root, in the error.
func openSub(dirfd int, name, rel string, flags int) (int, error) {
	fd, err := openIn(dirfd, name, flags)
	if pe, ok := err.(*os.PathError); ok {
		pe.Path = rel
	}
	return fd, err
}

// removeIfSame removes base from dirfd if it is still the file st
// describes: after a failed upload, the program may have put its own
// entry under that name.
func removeIfSame(dirfd int, base string, st *unix.Stat_t) {
	var now unix.Stat_t
	if unix.Fstatat(dirfd, base, &now, unix.AT_SYMLINK_NOFOLLOW) == nil && now.Dev == st.Dev && now.Ino == st.Ino {
		unix.Unlinkat(dirfd, base, 0)
	}
}

// errnoClasses sort the failures of the file operations into the classes
// a client can act on, with what to tell it.
var errnoClasses = []struct {
	errno unix.Errno
	class error
	why   string
}{
	{unix.ENOENT, workspace.ErrFileNotFound, ""},
	{unix.ELOOP, workspace.ErrNotRegular, "symlinks are never followed"},
	{unix.EXDEV, workspace.ErrNotRegular, "mount points are never crossed"},
	{unix.ENOTDIR, workspace.ErrNotRegular, "it or a parent is a symlink or not a directory"},
	{unix.EISDIR, workspace.ErrNotRegular, "it is a directory"},
	{unix.ENXIO, workspace.ErrNotRegular, "it is a fifo or a socket"},
	{unix.ENOSPC, workspace.ErrFull, ""},
	{unix.EDQUOT, workspace.ErrFull, ""},
	{unix.ENOTEMPTY, workspace.ErrDirNotEmpty, ""},
	{unix.EFBIG, workspace.ErrFileTooLarge, ""},
	{unix.ENAMETOOLONG, workspace.ErrBadFileName, "a path element is longer than 255 bytes"},
}

// fileError is the error of operation op on the client's name that failed
// with err: its class, if it has one, and err.
func fileError(op, name string, err error) error {
	for _, c := range errnoClasses {
		if !errors.Is(err, c.errno) {
			continue
		}
		if c.why != "" {
			return fmt.Errorf("%s %q: %w (%s): %w", op, name, c.class, c.why, err)
		}
		return fmt.Errorf("%s %q: %w: %w", op, name, c.class, err)
	}
	return fmt.Errorf("%s %q: %w", op, name, err)
}

// typeError refuses an entry of file type mode where a regular file is
// needed.
func typeError(op, name string, mode uint32) error {
	what := "not a regular file"
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		what = "a directory"
	case unix.S_IFLNK:
		what = "a symlink"
	case unix.S_IFIFO:
		what = "a fifo"
	case unix.S_IFSOCK:
		what = "a socket"
	case unix.S_IFCHR, unix.S_IFBLK:
		what = "a device"
	}
	return fmt.Errorf("%s %q: %w (it is %s, not a regular file)", op, name, workspace.ErrNotRegular, what)
}

// fileInfo describes the entry name from its lstat.
func fileInfo(name string, st *unix.Stat_t) workspace.FileInfo {
	typ := "other"
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		typ = "file"
	case unix.S_IFDIR:
		typ = "dir"
	case unix.S_IFLNK:
		typ = "symlink"
	}
	return workspace.FileInfo{
		Name:    name,
		Type:    typ,
		Size:    st.Size,
		Mode:    st.Mode & 0o777,
		ModTime: time.Unix(st.Mtim.Unix()),
	}
}
