package wasm

import (
	"testing"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/experimental/sysfs"
)

func newTestFS(t *testing.T, q *quota) *workspaceFS {
	t.Helper()
	return &workspaceFS{FS: sysfs.DirFS(t.TempDir()), q: q}
}

func create(t *testing.T, fs *workspaceFS, name string) experimentalsys.File {
	t.Helper()
	f, errno := fs.OpenFile(name, experimentalsys.O_CREAT|experimentalsys.O_RDWR, 0o644)
	if errno != 0 {
		t.Fatalf("create %s: %v", name, errno)
	}
	return f
}

func TestWorkspaceFSLinks(t *testing.T) {
	t.Parallel()
	fs := newTestFS(t, &quota{maxBytes: 1 << 20, maxFile: 1 << 20, maxEntries: 10, maxOpen: 10})
	create(t, fs, "a").Close()
	if errno := fs.Symlink("../../../etc/passwd", "x"); errno != experimentalsys.EPERM {
		t.Errorf("Symlink = %v, want EPERM", errno)
	}
	if errno := fs.Link("a", "b"); errno != experimentalsys.EPERM {
		t.Errorf("Link = %v, want EPERM", errno)
	}
}

func TestWorkspaceFSQuota(t *testing.T) {
	t.Parallel()
	q := &quota{maxBytes: 1000, maxFile: 600, maxEntries: 3, maxOpen: 10}
	fs := newTestFS(t, q)
	if q.wasTouched() {
		t.Fatal("touched before any write")
	}
	f := create(t, fs, "a")
	if !q.wasTouched() {
		t.Error("not touched after a create")
	}
	if n, errno := f.Write(make([]byte, 500)); errno != 0 || n != 500 {
		t.Fatalf("write 500: %d %v", n, errno)
	}
	if _, errno := f.Write(make([]byte, 200)); errno != experimentalsys.EIO {
		t.Errorf("growing a file past the file size cap: %v, want EIO", errno)
	}
	if _, errno := f.Pwrite(make([]byte, 100), 0); errno != 0 {
		t.Errorf("overwriting in place: %v", errno)
	}
	g := create(t, fs, "b")
	if _, errno := g.Write(make([]byte, 550)); errno != experimentalsys.EIO {
		t.Errorf("writing past the workspace quota: %v, want EIO", errno)
	}
	if _, errno := g.Write(make([]byte, 450)); errno != 0 {
		t.Errorf("writing up to the quota: %v", errno)
	}
	f.Close()
	g.Close()
	if errno := fs.Unlink("a"); errno != 0 {
		t.Fatal(errno)
	}
	if errno := fs.Mkdir("d", 0o755); errno != 0 {
		t.Fatalf("mkdir after an unlink freed an entry: %v", errno)
	}
	create(t, fs, "c").Close()
	if _, errno := fs.OpenFile("e", experimentalsys.O_CREAT|experimentalsys.O_RDWR, 0o644); errno != experimentalsys.EIO {
		t.Errorf("a fourth entry: %v, want EIO", errno)
	}
	h, errno := fs.OpenFile("b", experimentalsys.O_RDWR|experimentalsys.O_TRUNC, 0)
	if errno != 0 {
		t.Fatal(errno)
	}
	if _, errno := h.Write(make([]byte, 600)); errno != 0 {
		t.Errorf("a truncated file's bytes were not given back: %v", errno)
	}
	h.Close()
	if !q.wasHit() {
		t.Error("quota hits not recorded")
	}
}

func TestWorkspaceFSOpenFiles(t *testing.T) {
	t.Parallel()
	q := &quota{maxBytes: 1 << 20, maxFile: 1 << 20, maxEntries: 10, maxOpen: 2}
	fs := newTestFS(t, q)
	a := create(t, fs, "a")
	b := create(t, fs, "b")
	if _, errno := fs.OpenFile("a", experimentalsys.O_RDONLY, 0); errno != experimentalsys.EIO {
		t.Errorf("a third open file: %v, want EIO", errno)
	}
	a.Close()
	c, errno := fs.OpenFile("a", experimentalsys.O_RDONLY, 0)
	if errno != 0 {
		t.Errorf("open after a close: %v", errno)
	} else {
		c.Close()
	}
	b.Close()
}
