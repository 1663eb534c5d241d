package isolate

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/workspace"
)

// newFilesWorkspace returns a fresh workspace of the given size, removed
// when the test ends. Tests plant entries in ws.local() directly, as the
// sandboxed program would.
func newFilesWorkspace(t *testing.T, size limits.Bytes) *Workspace {
	t.Helper()
	ws, err := requireRunner(t).NewWorkspace(size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ws.Close(); err != nil {
			t.Errorf("close workspace: %v", err)
		}
	})
	return ws
}

func put(ws *Workspace, name, content string) error {
	_, err := ws.PutFile(name, strings.NewReader(content), 0, 1<<20)
	return err
}

func readWS(t *testing.T, ws *Workspace, name string) string {
	t.Helper()
	f, _, err := ws.OpenFile(name)
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func names(files []workspace.FileInfo) []string {
	var s []string
	for _, f := range files {
		s = append(s, f.Name+":"+f.Type)
	}
	return s
}

// within fails the test if op does not return within a few seconds: a
// fifo must never block the daemon.
func within(t *testing.T, op func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- op() }()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("blocked for 5s")
		return nil
	}
}

// TestFilesRoundtrip: put, replace, open, list and remove, with the
// sandbox user owning what PutFile creates.
func TestFilesRoundtrip(t *testing.T) {
	ws := newFilesWorkspace(t, 16*limits.MiB)
	n, err := ws.PutFile("a/b/c.txt", strings.NewReader("hello, world"), 0o600, 1<<20)
	if err != nil || n != 12 {
		t.Fatalf("put: %d, %v", n, err)
	}
	if err := put(ws, "a/b/c.txt", "bye"); err != nil {
		t.Fatalf("replace: %v", err)
	}
	if got := readWS(t, ws, "a/b/c.txt"); got != "bye" {
		t.Errorf("content %q after replace, want %q", got, "bye")
	}
	f, info, err := ws.OpenFile("a/b/c.txt")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if info.Name != "a/b/c.txt" || info.Type != "file" || info.Size != 3 || info.Mode != 0o644 || time.Since(info.ModTime) > time.Minute {
		t.Errorf("info %+v", info)
	}
	uid, gid := uint32(ws.dir.ids.uid+SandboxUID), uint32(ws.dir.ids.gid+SandboxUID)
	for _, p := range []string{"a", "a/b", "a/b/c.txt"} {
		st, err := os.Lstat(filepath.Join(ws.local(), p))
		if err != nil {
			t.Fatal(err)
		}
		if s := st.Sys().(*syscall.Stat_t); s.Uid != uid || s.Gid != gid {
			t.Errorf("%s owned by %d:%d, want %d:%d", p, s.Uid, s.Gid, uid, gid)
		}
	}
	files, truncated, err := ws.ListFiles("", 100)
	if want := []string{"a:dir", "a/b:dir", "a/b/c.txt:file"}; err != nil || truncated || !slices.Equal(names(files), want) {
		t.Errorf("list: %v %v %v, want %v", names(files), truncated, err, want)
	}
	steps := []struct {
		name string
		want error
	}{
		{"a", workspace.ErrDirNotEmpty},
		{"a/b/c.txt", nil},
		{"a/b/c.txt", workspace.ErrFileNotFound},
		{"a/b", nil},
		{"a", nil},
	}
	for _, s := range steps {
		if err := ws.RemoveFile(s.name); !errors.Is(err, s.want) {
			t.Errorf("remove %s: %v, want %v", s.name, err, s.want)
		}
	}
	var pe *os.PathError
	if _, _, err := ws.OpenFile("a/b/c.txt"); !errors.Is(err, workspace.ErrFileNotFound) || !errors.As(err, &pe) {
		t.Errorf("open removed file: %v, want workspace.ErrFileNotFound with a PathError", err)
	}
	if files, _, err := ws.ListFiles(".", 100); err != nil || len(files) != 0 {
		t.Errorf("list after removal: %v %v", names(files), err)
	}
}

// TestFilesBadNames: every operation refuses names that are not plain
// paths inside the workspace.
func TestFilesBadNames(t *testing.T) {
	ws := newFilesWorkspace(t, limits.MiB)
	ops := map[string]func(string) error{
		"put":    func(n string) error { return put(ws, n, "x") },
		"open":   func(n string) error { _, _, err := ws.OpenFile(n); return err },
		"remove": ws.RemoveFile,
		"list":   func(n string) error { _, _, err := ws.ListFiles(n, 10); return err },
	}
	for _, name := range []string{"..", "../x", "a/../../x", "/etc/passwd", "a//b", "a/./b", "a\x00b", `a\b`, ".sandboxd/x", strings.Repeat("n", 300)} {
		for op, do := range ops {
			if err := do(name); !errors.Is(err, workspace.ErrBadFileName) {
				t.Errorf("%s %q: %v, want workspace.ErrBadFileName", op, name, err)
			}
		}
	}
	if entries, _ := os.ReadDir(ws.local()); len(entries) != 0 {
		t.Errorf("workspace not empty: %v", entries)
	}
}

// TestFilesSymlinks: symlinks the program planted, to a host file, a host
// directory or up out of the workspace, are refused, never followed, and
// removing one removes the link alone.
func TestFilesSymlinks(t *testing.T) {
	ws := newFilesWorkspace(t, limits.MiB)
	hostDir := t.TempDir()
	secret := filepath.Join(hostDir, "secret")
	if err := os.WriteFile(secret, []byte("host secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(ws.local(), "real"), 0o755); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{"leak": secret, "d": hostDir, "up": "../../../../..", "real/back": "..", "dangling": filepath.Join(hostDir, "new")} {
		if err := os.Symlink(target, filepath.Join(ws.local(), link)); err != nil {
			t.Fatal(err)
		}
	}
	open := func(n string) func() error {
		return func() error { _, _, err := ws.OpenFile(n); return err }
	}
	list := func(n string) func() error {
		return func() error { _, _, err := ws.ListFiles(n, 10); return err }
	}
	putf := func(n string) func() error { return func() error { return put(ws, n, "pwned") } }
	tests := []struct {
		name string
		do   func() error
	}{
		{"open leak", open("leak")},
		{"open d/secret", open("d/secret")},
		{"open up/etc/passwd", open("up/etc/passwd")},
		{"open real/back/leak", open("real/back/leak")},
		{"put leak", putf("leak")},
		{"put dangling", putf("dangling")},
		{"put d/x", putf("d/x")},
		{"put d/secret", putf("d/secret")},
		{"put d/sub/x", putf("d/sub/x")},
		{"put real/back/x", putf("real/back/x")},
		{"list d", list("d")},
		{"list up", list("up")},
		{"remove d/secret", func() error { return ws.RemoveFile("d/secret") }},
	}
	for _, tt := range tests {
		if err := tt.do(); !errors.Is(err, workspace.ErrNotRegular) {
			t.Errorf("%s: %v, want workspace.ErrNotRegular", tt.name, err)
		}
	}
	files, _, err := ws.ListFiles(".", 100)
	want := []string{"d:symlink", "dangling:symlink", "leak:symlink", "real:dir", "real/back:symlink", "up:symlink"}
	if err != nil || !slices.Equal(names(files), want) {
		t.Errorf("list: %v %v, want %v", names(files), err, want)
	}
	for _, link := range []string{"d", "leak", "dangling"} {
		if err := ws.RemoveFile(link); err != nil {
			t.Errorf("remove %s: %v", link, err)
		}
		if _, err := os.Lstat(filepath.Join(ws.local(), link)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("link %s still there: %v", link, err)
		}
	}
	if b, err := os.ReadFile(secret); err != nil || string(b) != "host secret" {
		t.Errorf("host secret: %q %v", b, err)
	}
	if entries, _ := os.ReadDir(hostDir); len(entries) != 1 {
		t.Errorf("host dir changed: %v", entries)
	}
}

// TestFilesSymlinkRace: the program swaps a directory for a symlink to a
// host directory while files are put, read, listed and removed through it;
// the host directory is never touched.
func TestFilesSymlinkRace(t *testing.T) {
	ws := newFilesWorkspace(t, 4*limits.MiB)
	hostDir := t.TempDir()
	secret := filepath.Join(hostDir, "x")
	if err := os.WriteFile(secret, []byte("host secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		a := filepath.Join(ws.local(), "a")
		for {
			select {
			case <-stop:
				return
			default:
			}
			os.RemoveAll(a)
			os.Mkdir(a, 0o755)
			os.RemoveAll(a)
			os.Symlink(hostDir, a)
		}
	}()
	for i := range 2000 {
		var err error
		switch i % 4 {
		case 0:
			err = put(ws, "a/x", "pwned")
		case 1:
			_, _, err = ws.ListFiles("a", 10)
		case 2:
			var f *os.File
			if f, _, err = ws.OpenFile("a/x"); err == nil {
				b, _ := io.ReadAll(f)
				f.Close()
				if string(b) == "host secret" {
					t.Fatal("read the host file through the link")
				}
			}
		case 3:
			err = ws.RemoveFile("a/x")
		}
		if err != nil && !errors.Is(err, workspace.ErrNotRegular) && !errors.Is(err, workspace.ErrFileNotFound) {
			t.Errorf("op %d: %v", i, err)
		}
	}
	close(stop)
	wg.Wait()
	if b, err := os.ReadFile(secret); err != nil || string(b) != "host secret" {
		t.Errorf("host file: %q %v", b, err)
	}
	if entries, _ := os.ReadDir(hostDir); len(entries) != 1 {
		t.Errorf("host dir changed: %v", entries)
	}
}

// TestFilesSpecial: fifos, sockets and directories are refused at once,
// never opened for I/O or waited on.
func TestFilesSpecial(t *testing.T) {
	ws := newFilesWorkspace(t, limits.MiB)
	if err := unix.Mkfifo(filepath.Join(ws.local(), "fifo"), 0o666); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", filepath.Join(ws.local(), "sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := os.Mkdir(filepath.Join(ws.local(), "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"fifo", "sock", "dir"} {
		if err := within(t, func() error { _, _, err := ws.OpenFile(name); return err }); !errors.Is(err, workspace.ErrNotRegular) {
			t.Errorf("open %s: %v, want workspace.ErrNotRegular", name, err)
		}
		if err := within(t, func() error { return put(ws, name, "x") }); !errors.Is(err, workspace.ErrNotRegular) {
			t.Errorf("put %s: %v, want workspace.ErrNotRegular", name, err)
		}
	}
	for _, name := range []string{"fifo/x", "sock/x"} {
		if err := put(ws, name, "x"); !errors.Is(err, workspace.ErrNotRegular) {
			t.Errorf("put %s: %v, want workspace.ErrNotRegular", name, err)
		}
	}
	files, _, err := ws.ListFiles(".", 10)
	if want := []string{"dir:dir", "fifo:other", "sock:other"}; err != nil || !slices.Equal(names(files), want) {
		t.Errorf("list: %v %v, want %v", names(files), err, want)
	}
	for _, name := range []string{"fifo", "sock"} {
		if err := ws.RemoveFile(name); err != nil {
			t.Errorf("remove %s: %v", name, err)
		}
	}
}

// TestFilesLimits: an upload past its cap or past the workspace's space
// fails with its own error and leaves no file behind.
func TestFilesLimits(t *testing.T) {
	ws := newFilesWorkspace(t, limits.MiB)
	if err := put(ws, "old", "previous content"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		size     int64
		maxBytes int64
		want     error
	}{
		{"exact", 1000, 1000, nil},
		{"empty", 0, 0, nil},
		{"over", 1001, 1000, workspace.ErrFileTooLarge},
		{"old", 4096, 100, workspace.ErrFileTooLarge}, // a failed replace leaves nothing
		{"full", 2 << 20, 8 << 20, workspace.ErrFull},
		{"deep/er/full", 2 << 20, 8 << 20, workspace.ErrFull},
	}
	for _, tt := range tests {
		n, err := ws.PutFile(tt.name, bytes.NewReader(make([]byte, tt.size)), 0, tt.maxBytes)
		if !errors.Is(err, tt.want) {
			t.Errorf("put %s: %v, want %v", tt.name, err, tt.want)
		}
		_, serr := os.Lstat(filepath.Join(ws.local(), tt.name))
		switch {
		case tt.want == nil && (n != tt.size || serr != nil):
			t.Errorf("put %s: wrote %d bytes (%v), want %d", tt.name, n, serr, tt.size)
		case tt.want != nil && !errors.Is(serr, os.ErrNotExist):
			t.Errorf("put %s: file left behind (%v)", tt.name, serr)
		}
	}
	if err := put(ws, "after", "space is back"); err != nil {
		t.Errorf("put after a full workspace: %v", err)
	}
}

// TestListFiles: the cap on entries, the depth limit, a subdirectory and
// the hidden internal directory.
func TestListFiles(t *testing.T) {
	ws := newFilesWorkspace(t, 4*limits.MiB)
	for _, n := range []string{"b.txt", "a/1", "a/2", "c/d/e"} {
		if err := put(ws, n, n); err != nil {
			t.Fatal(err)
		}
	}
	if err := ws.MkdirInternal(".sandboxd/bin/x"); err != nil {
		t.Fatal(err)
	}
	// Deeper than a client may name (workspace.MaxDepth), as a program in
	// the sandbox can make it: written on the host side directly.
	deep := filepath.Join(ws.local(), "z", strings.Repeat("d/", 40))
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(deep, "f"), []byte("deep"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		dir       string
		max       int
		want      []string
		truncated bool
	}{
		{".", 3, []string{"a:dir", "a/1:file", "a/2:file"}, true},
		{"", 6, []string{"a:dir", "a/1:file", "a/2:file", "b.txt:file", "c:dir", "c/d:dir"}, true},
		{"c", 10, []string{"c/d:dir", "c/d/e:file"}, false},
		{"c", 2, []string{"c/d:dir", "c/d/e:file"}, false},
		{"c", 1, []string{"c/d:dir"}, true},
		{"a", 0, nil, true},
	}
	for _, tt := range tests {
		files, truncated, err := ws.ListFiles(tt.dir, tt.max)
		if err != nil || truncated != tt.truncated || !slices.Equal(names(files), tt.want) {
			t.Errorf("list %q max %d: %v %v %v, want %v %v", tt.dir, tt.max, names(files), truncated, err, tt.want, tt.truncated)
		}
	}
	files, truncated, err := ws.ListFiles("z", 1000)
	if err != nil || !truncated || len(files) != maxListDepth {
		t.Errorf("list z: %d entries, truncated %v, %v; want %d, truncated", len(files), truncated, err, maxListDepth)
	}
	if _, _, err := ws.ListFiles("b.txt", 10); !errors.Is(err, workspace.ErrNotRegular) {
		t.Errorf("list a file: %v, want workspace.ErrNotRegular", err)
	}
	if _, _, err := ws.ListFiles("nope", 10); !errors.Is(err, workspace.ErrFileNotFound) {
		t.Errorf("list a missing dir: %v, want workspace.ErrFileNotFound", err)
	}
}

// TestFilesAfterClose: file operations on a closed workspace fail and
// write nothing into the directory the workspace was mounted on.
func TestFilesAfterClose(t *testing.T) {
	r := requireRunner(t)
	ws, err := r.NewWorkspace(limits.MiB)
	if err != nil {
		t.Fatal(err)
	}
	work := ws.local()
	// What Close does first: detach the tmpfs (in the runs' mount
	// namespace, where it is); the directory stays.
	if err := r.mounts.do(func() error { return unix.Unmount(ws.work, unix.MNT_DETACH) }); err != nil {
		t.Fatal(err)
	}
	if _, err := ws.PutFile("x", strings.NewReader("data"), 0o644, 1<<20); !errors.Is(err, workspace.ErrFileNotFound) {
		t.Errorf("put after unmount: %v", err)
	}
	if _, err := os.Stat(filepath.Join(work, "x")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a file was written under the unmounted workspace: %v", err)
	}
	if err := ws.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ws.ListFiles("", 10); !errors.Is(err, workspace.ErrFileNotFound) {
		t.Errorf("list after close: %v", err)
	}
}

// TestMakeDir: directories and their parents are made, an existing one
// is reported as such, and a symlink planted on the way is not followed.
func TestMakeDir(t *testing.T) {
	ws := newFilesWorkspace(t, 0)
	created, err := ws.MakeDir("a/b/c")
	if err != nil || !created {
		t.Fatalf("MakeDir a/b/c = %v, %v; want created", created, err)
	}
	if fi, err := os.Lstat(filepath.Join(ws.local(), "a/b/c")); err != nil || !fi.IsDir() {
		t.Fatalf("a/b/c not a directory: %v", err)
	}
	if created, err := ws.MakeDir("a/b"); err != nil || created {
		t.Errorf("MakeDir of an existing directory = %v, %v; want false, nil", created, err)
	}
	if err := put(ws, "f", "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := ws.MakeDir("f/sub"); err == nil {
		t.Error("MakeDir under a regular file succeeded")
	}
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(ws.local(), "link")); err != nil {
		t.Fatal(err)
	}
	if _, err := ws.MakeDir("link/evil"); err == nil {
		t.Error("MakeDir through a symlink succeeded")
	}
	if _, err := os.Lstat(filepath.Join(outside, "evil")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("MakeDir wrote outside the workspace: %v", err)
	}
	if _, err := ws.MakeDir("../x"); !errors.Is(err, workspace.ErrBadFileName) {
		t.Error("MakeDir of ../x succeeded")
	}
}
