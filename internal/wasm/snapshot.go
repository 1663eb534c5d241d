package wasm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing/fstest"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/experimental/sysfs"
	"github.com/tetratelabs/wazero/sys"
)

// Start-up snapshots: the Wizer technique, done at run time with wazero.
//
// CPython spends most of a short run starting up: the runtime, the import
// system, site. python.wasm (scripts/wasm/python-main.c) splits its main
// in two exports around that point: sandboxd_init does what Py_BytesMain
// does before running anything, sandboxd_run the rest (the script, then
// finalisation and exit), and its _start calls both. A module exporting
// both halves and `_initialize` (its C constructors) can run from a
// snapshot: an instance runs the constructors and the first half once, its
// linear memory is copied, and each later run instantiates the module
// without a start function, writes the copy into its memory, and calls
// the second half.
//
// A run from a snapshot must do exactly what the cold run would have, so a
// snapshot is used only where the first half cannot have gone otherwise:
//
//   - Its key is everything the first half reads: the module, the argv,
//     the environment, the mounts, and the open-file cap (a start-up that
//     a tight cap would have failed must fail). The stdio streams are the
//     runner's writers and readers for every run, which WASI shows the
//     guest alike (character devices); an *os.File would not be, and
//     disables snapshots.
//   - The first half sees an empty workspace. Every path it looked up
//     there (getpath walking PATH, site's user site-packages under HOME,
//     ...) is recorded, and a run whose workspace has any of them starts
//     cold. A first half that found anything there, changed anything,
//     wrote to stdout or stderr, or ended (--version, a bad option, an
//     error) is not snapshotted: the cold run does all that itself.
//   - Globals: the module's only mutable global is the stack pointer
//     (wasm-ld's for a non-PIC build), back at its initial value once the
//     first half has returned; tables are not written at run time. So the
//     linear memory is the whole state.
//
// What runs from one snapshot share is what the first half computed:
// among it CPython's string hash secret, drawn from random_get once per
// snapshot. A snapshot serves snapshotUses runs and is taken again, so a
// secret one run learns is good for at most that many others of the same
// key in the same worker. Nothing a run does reaches the snapshot: it is
// copied into each run's memory and never written back.

const (
	exportCtors = "_initialize"
	exportInit  = "sandboxd_init"
	exportRun   = "sandboxd_run"
	// snapshotUses is how many runs a snapshot serves before it is taken
	// again (a fresh hash secret).
	snapshotUses = 64
	// snapshotsKept bounds the snapshots (and failed attempts) kept per
	// process, least recently used out first; a snapshot of python.wasm
	// holds about 4 MiB.
	snapshotsKept = 4
	// memPage is the granularity snapshots are kept and restored in.
	memPage = 4096
)

// snapshots are this process's (a worker's, or an in-process runner's).
var snapshots snapshotCache

type snapshotCache struct {
	mu sync.Mutex
	// entries, least recently used first.
	entries []*snapEntry
}

type snapEntry struct {
	cm  wazero.CompiledModule
	key string
	// snap is nil when the start-up cannot be snapshotted.
	snap *snapshot
	uses int
}

// snapshot is an interpreter's linear memory after its start-up.
type snapshot struct {
	// size of the linear memory, in bytes.
	size uint64
	// chunks to write into a fresh instance's memory: the pages that are
	// not zero in the snapshot, or were not zero in a fresh instance
	// (written by the data segments).
	chunks []memChunk
	// absent are the workspace paths the start-up looked up, in vain.
	absent []string
}

type memChunk struct {
	off uint32
	b   []byte
}

// lookup returns the snapshot job can start from, taking one if there is
// none yet; nil when the job must start cold.
func (c *snapshotCache) lookup(ctx context.Context, rt wazero.Runtime, cm wazero.CompiledModule, job *guestJob, gio guestIO) *snapshot {
	if !job.Snapshot || !canSnapshot(cm) || !deviceStdio(gio) {
		return nil
	}
	key := snapshotKey(job)
	c.mu.Lock()
	e := c.take(cm, key)
	c.mu.Unlock()
	if e == nil {
		snap, keep := takeSnapshot(ctx, rt, cm, job)
		if !keep {
			return nil
		}
		e = &snapEntry{cm: cm, key: key, snap: snap, uses: 1}
		c.mu.Lock()
		c.put(e)
		c.mu.Unlock()
	}
	s := e.snap
	if s == nil || s.size > job.Memory || !s.absentFrom(job.Dir) {
		return nil
	}
	return s
}

// take finds the entry for cm and key, counts a use and makes it the most
// recently used; an entry that has served snapshotUses runs is dropped.
func (c *snapshotCache) take(cm wazero.CompiledModule, key string) *snapEntry {
	for i, e := range c.entries {
		if e.cm != cm || e.key != key {
			continue
		}
		c.entries = append(c.entries[:i], c.entries[i+1:]...)
		if e.snap != nil && e.uses >= snapshotUses {
			return nil
		}
		e.uses++
		c.entries = append(c.entries, e)
		return e
	}
	return nil
}

func (c *snapshotCache) put(e *snapEntry) {
	for i, o := range c.entries {
		if o.cm == e.cm && o.key == e.key {
			c.entries = append(c.entries[:i], c.entries[i+1:]...)
			break
		}
	}
	c.entries = append(c.entries, e)
	if n := len(c.entries) - snapshotsKept; n > 0 {
		c.entries = append(c.entries[:0], c.entries[n:]...)
	}
}

// canSnapshot reports whether the module exports the two halves.
func canSnapshot(cm wazero.CompiledModule) bool {
	fns := cm.ExportedFunctions()
	for _, name := range []string{exportCtors, exportInit, exportRun} {
		if d, ok := fns[name]; !ok || len(d.ParamTypes()) != 0 || len(d.ResultTypes()) != 0 {
			return false
		}
	}
	return true
}

// deviceStdio reports whether WASI shows the run's streams as it shows the
// snapshot's: wazero stats an *os.File, and shows any other reader or
// writer as a character device.
func deviceStdio(gio guestIO) bool {
	_, f0 := gio.stdin.(*os.File)
	_, f1 := gio.stdout.(*os.File)
	_, f2 := gio.stderr.(*os.File)
	return !f0 && !f1 && !f2
}

// snapshotKey is what the start-up reads, besides the workspace.
func snapshotKey(job *guestJob) string {
	var b strings.Builder
	field := func(s string) {
		b.WriteString(strconv.Itoa(len(s)))
		b.WriteByte(':')
		b.WriteString(s)
	}
	field(job.Module)
	for _, list := range [][]string{job.Argv, job.Env} {
		field(strconv.Itoa(len(list)))
		for _, s := range list {
			field(s)
		}
	}
	for _, m := range job.Mounts {
		field(m.Host)
		field(m.Guest)
	}
	field(strconv.FormatInt(job.MaxOpen, 10))
	return b.String()
}

// absentFrom reports whether none of the paths the start-up looked for is
// in the workspace dir: then it would have gone the same way there.
func (s *snapshot) absentFrom(dir string) bool {
	for _, p := range s.absent {
		if _, err := os.Lstat(filepath.Join(dir, p)); !errors.Is(err, fs.ErrNotExist) {
			return false
		}
	}
	return true
}

// takeSnapshot runs the start-up of job's module in an empty workspace
// and copies its memory. keep is false when the attempt says nothing
// about the next one (the run's context ended, instantiation failed).
func takeSnapshot(ctx context.Context, rt wazero.Runtime, cm wazero.CompiledModule, job *guestJob) (snap *snapshot, keep bool) {
	q := &quota{maxBytes: job.MaxBytes, maxFile: job.MaxFile, maxEntries: job.MaxEntries, maxOpen: job.MaxOpen}
	// An empty directory that exists nowhere: the start-up must find
	// nothing in the workspace, and may change nothing (see lookupFS).
	rec := &lookupFS{FS: &sysfs.AdaptFS{FS: fstest.MapFS{}}}
	var out countWriter
	gio := guestIO{stdin: bytes.NewReader(nil), stdout: &out, stderr: &out}
	cfg := guestConfig(ctx, job, gio, rec, rec, q).WithStartFunctions()
	mem := newMemoryCap(job.Memory)
	m, err := rt.InstantiateModule(experimental.WithMemoryAllocator(ctx, mem), cm, cfg)
	if err != nil {
		return nil, false
	}
	defer m.Close(context.WithoutCancel(ctx))
	fresh := nonZeroPages(memoryBytes(m.Memory()), nil)
	for _, name := range []string{exportCtors, exportInit} {
		if _, err := m.ExportedFunction(name).Call(ctx); err != nil {
			var exit *sys.ExitError
			return nil, ctx.Err() == nil && (errors.As(err, &exit) || isTrap(err))
		}
	}
	if out.n > 0 || rec.changed || rec.found {
		return nil, true
	}
	return &snapshot{
		size:   uint64(m.Memory().Size()),
		chunks: memoryChunks(m.Memory(), fresh),
		absent: rec.absent(),
	}, true
}

func isTrap(err error) bool {
	_, ok := asTrap(err)
	return ok
}

// memoryBytes is a view of all of mem.
func memoryBytes(mem api.Memory) []byte {
	b, _ := mem.Read(0, mem.Size())
	return b
}

// zeroPage is what an untouched page holds.
var zeroPage [memPage]byte

// nonZeroPages marks the pages of b that are not all zero, on top of marks
// (which it may extend).
func nonZeroPages(b []byte, marks []bool) []bool {
	n := len(b) / memPage
	for len(marks) < n {
		marks = append(marks, false)
	}
	for i := range n {
		if !marks[i] && !bytes.Equal(b[i*memPage:(i+1)*memPage], zeroPage[:]) {
			marks[i] = true
		}
	}
	return marks
}

// memoryChunks copies the pages of mem that are not zero, or that fresh
// marks (not zero in a fresh instance, so to be overwritten), in runs of
// adjacent pages.
func memoryChunks(mem api.Memory, fresh []bool) []memChunk {
	b := memoryBytes(mem)
	marks := nonZeroPages(b, append([]bool(nil), fresh...))
	var chunks []memChunk
	for i := 0; i < len(marks); {
		if !marks[i] {
			i++
			continue
		}
		j := i
		for j < len(marks) && marks[j] {
			j++
		}
		chunks = append(chunks, memChunk{off: uint32(i * memPage), b: bytes.Clone(b[i*memPage : j*memPage])})
		i = j
	}
	return chunks
}

// run instantiates the module without its start function, restores the
// snapshot into its memory and calls the second half. The error is what
// InstantiateModule's would have been for _start.
func (s *snapshot) run(ctx context.Context, rt wazero.Runtime, cm wazero.CompiledModule, cfg wazero.ModuleConfig) error {
	m, err := rt.InstantiateModule(ctx, cm, cfg.WithStartFunctions())
	if err != nil {
		return err
	}
	defer m.Close(context.WithoutCancel(ctx))
	mem := m.Memory()
	if have := uint64(mem.Size()); have < s.size {
		if _, ok := mem.Grow(uint32((s.size - have) / wasmPage)); !ok {
			return fmt.Errorf("restore the start-up snapshot: grow the memory to %d bytes: refused", s.size)
		}
	}
	for _, c := range s.chunks {
		if !mem.Write(c.off, c.b) {
			return fmt.Errorf("restore the start-up snapshot: write %d bytes at %d: out of range", len(c.b), c.off)
		}
	}
	_, err = m.ExportedFunction(exportRun).Call(ctx)
	return err
}

// lookupFS records the paths looked up in the snapshot's workspace, and
// whether anything was found or changed there.
type lookupFS struct {
	experimentalsys.FS
	mu      sync.Mutex
	paths   map[string]bool
	found   bool
	changed bool
}

// saw records a lookup of p that returned errno. The workspace's root
// exists for every run; anything else found there, or a path that
// leaves it, spoils the snapshot.
func (l *lookupFS) saw(p string, errno experimentalsys.Errno) {
	l.mu.Lock()
	defer l.mu.Unlock()
	clean := path.Clean("/" + p)
	switch {
	case clean == "/":
	case clean != "/"+strings.TrimPrefix(p, "/") || errno != experimentalsys.ENOENT:
		l.found = true
	default:
		if l.paths == nil {
			l.paths = map[string]bool{}
		}
		l.paths[clean[1:]] = true
	}
}

func (l *lookupFS) change() experimentalsys.Errno {
	l.mu.Lock()
	l.changed = true
	l.mu.Unlock()
	return experimentalsys.EROFS
}

func (l *lookupFS) absent() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for p := range l.paths {
		out = append(out, p)
	}
	return out
}

func (l *lookupFS) OpenFile(p string, flag experimentalsys.Oflag, perm fs.FileMode) (experimentalsys.File, experimentalsys.Errno) {
	if writable(flag) || flag&(experimentalsys.O_CREAT|experimentalsys.O_TRUNC) != 0 {
		return nil, l.change()
	}
	f, errno := l.FS.OpenFile(p, flag, perm)
	l.saw(p, errno)
	return f, errno
}

func (l *lookupFS) Lstat(p string) (sys.Stat_t, experimentalsys.Errno) {
	st, errno := l.FS.Lstat(p)
	l.saw(p, errno)
	return st, errno
}

func (l *lookupFS) Stat(p string) (sys.Stat_t, experimentalsys.Errno) {
	st, errno := l.FS.Stat(p)
	l.saw(p, errno)
	return st, errno
}

func (l *lookupFS) Readlink(p string) (string, experimentalsys.Errno) {
	s, errno := l.FS.Readlink(p)
	l.saw(p, errno)
	return s, errno
}

func (l *lookupFS) Mkdir(string, fs.FileMode) experimentalsys.Errno    { return l.change() }
func (l *lookupFS) Chmod(string, fs.FileMode) experimentalsys.Errno    { return l.change() }
func (l *lookupFS) Rename(string, string) experimentalsys.Errno        { return l.change() }
func (l *lookupFS) Rmdir(string) experimentalsys.Errno                 { return l.change() }
func (l *lookupFS) Unlink(string) experimentalsys.Errno                { return l.change() }
func (l *lookupFS) Link(string, string) experimentalsys.Errno          { return l.change() }
func (l *lookupFS) Symlink(string, string) experimentalsys.Errno       { return l.change() }
func (l *lookupFS) Utimens(string, int64, int64) experimentalsys.Errno { return l.change() }

// countWriter counts what the start-up wrote.
type countWriter struct{ n int }

func (w *countWriter) Write(p []byte) (int, error) {
	w.n += len(p)
	return len(p), nil
}
