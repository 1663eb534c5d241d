package isolate

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sandboxd/sandboxd/internal/limits"
)

// TestInitBinaryAndFallback runs the same program through the init binary
// and through the fallback (this binary re-executed), and checks that each
// result says which init it had.
func TestInitBinaryAndFallback(t *testing.T) {
	for _, c := range []struct {
		init, want string
	}{
		{testInit, initKindBinary},
		{InitReexec, initKindReexec},
	} {
		t.Run(c.want, func(t *testing.T) {
			r := requireRunnerInit(t, c.init)
			if got := r.InitKind(); got != c.want {
				t.Fatalf("InitKind() = %q, want %q", got, c.want)
			}
			res := runPython(t, r, "import os; print(os.getuid())", limits.Limits{}, "")
			if res.Status != "ok" || strings.TrimSpace(string(res.Stdout)) != "1000" {
				t.Fatalf("status %s, stdout %q, stderr %q; want ok, \"1000\"", res.Status, res.Stdout, res.Stderr)
			}
			if res.Isolation.Init != c.want || !res.Isolation.Seccomp {
				t.Errorf("isolation %+v: want init %q with seccomp", res.Isolation, c.want)
			}
		})
	}
}

// TestStaleInitRefused: an init binary whose hello carries another build
// gets no "go"; the run goes on re-executing this binary, and so do the
// runs after it.
func TestStaleInitRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("requires root: the process backend creates cgroups and maps uids")
	}
	dir := filepath.Join(t.TempDir(), staleInitDir)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, "sandboxd-init")
	if err := os.WriteFile(stale, self, 0o755); err != nil {
		t.Fatal(err)
	}
	r := requireRunnerInit(t, stale)
	if r.InitKind() != initKindBinary {
		t.Fatalf("the stale binary was refused before its hello: InitKind() = %q", r.InitKind())
	}
	for i := range 2 {
		res := runPython(t, r, "print('ran')", limits.Limits{}, "")
		if res.Status != "ok" || string(res.Stdout) != "ran\n" || res.Isolation.Init != initKindReexec {
			t.Fatalf("run %d: status %s, init %q, stdout %q, reason %q; want ok on the fallback", i, res.Status, res.Isolation.Init, res.Stdout, res.Reason)
		}
	}
	if r.InitKind() != initKindReexec {
		t.Errorf("after a stale hello, InitKind() = %q, want %q", r.InitKind(), initKindReexec)
	}
}

// TestUntrustedInitRefused: openInit refuses an init binary that someone
// other than root could replace, or that the sandbox's uids cannot run.
func TestUntrustedInitRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("requires root: the checks accept files of root or of this process's uid, and chown needs root")
	}
	self, err := os.ReadFile(testInit)
	if err != nil {
		t.Skip("no init binary built:", err)
	}
	for _, c := range []struct {
		name    string
		prepare func(t *testing.T, dir, bin string)
		want    string // in the error; "" for accepted
	}{
		{"trusted", func(*testing.T, string, string) {}, ""},
		{"group writable", func(t *testing.T, _, bin string) { chmod(t, bin, 0o775) }, "writable by group or others"},
		{"other writable dir", func(t *testing.T, dir, _ string) { chmod(t, dir, 0o757) }, "writable by group or others"},
		{"not executable by others", func(t *testing.T, _, bin string) { chmod(t, bin, 0o750) }, "chmod o+x"},
		{"owned by another uid", func(t *testing.T, _, bin string) { chown(t, bin, 12345) }, "owned by uid 12345"},
		{"dir owned by another uid", func(t *testing.T, dir, _ string) { chown(t, dir, 12345) }, "owned by uid 12345"},
		{"symlink", func(t *testing.T, _, bin string) {
			if err := os.Rename(bin, bin+".real"); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(bin+".real", bin); err != nil {
				t.Fatal(err)
			}
		}, "not a regular file"},
		{"directory", func(t *testing.T, _, bin string) {
			if err := os.Remove(bin); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(bin, 0o755); err != nil {
				t.Fatal(err)
			}
		}, "not a regular file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "bin")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			bin := filepath.Join(dir, InitBinaryName)
			if err := os.WriteFile(bin, self, 0o755); err != nil {
				t.Fatal(err)
			}
			c.prepare(t, dir, bin)
			ib, err := openInit(bin)
			if ib != nil {
				ib.fd.Close()
			}
			switch {
			case c.want == "" && (err != nil || ib == nil):
				t.Fatalf("refused a trusted init binary: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("openInit: %v, want an error with %q", err, c.want)
			}
		})
	}
}

func chmod(t *testing.T, p string, m os.FileMode) {
	t.Helper()
	if err := os.Chmod(p, m); err != nil {
		t.Fatal(err)
	}
}

func chown(t *testing.T, p string, uid int) {
	t.Helper()
	if err := os.Chown(p, uid, 0); err != nil {
		t.Fatal(err)
	}
}

// TestInitStartsWhateverFDsAreOpen: init starts from the init binary
// whatever numbers the fds passed to it have. os/exec's child parks the
// fds it must move (those numbered below their place) just above the
// highest one passed. A binary held at a fixed number (64) was replaced
// in the child whenever a run's fds were numbered just below it: the child
// then executed the reaper's memfd (SIGSEGV before init's hello) or a
// pipe (EACCES). A held sandbox passes two control pipes, so the reaper
// is passed at a place above its low number and is moved; taking the
// lowest fds puts the run's own at each number of a range in turn.
func TestInitStartsWhateverFDsAreOpen(t *testing.T) {
	r := requireRunner(t)
	for base := 40; base <= 72; base++ {
		taken := takeFDs(t, base)
		ws, err := r.NewWorkspace(limits.Defaults().Tmpfs)
		if err != nil {
			t.Fatal(err)
		}
		p, err := r.StartHeld(t.Context(), ws, Exec{Argv: []string{"/usr/bin/python3", "-c", holdRunner}, Env: []string{"PATH=/usr/bin"}, Limits: limits.Defaults()})
		for _, fd := range taken {
			unix.Close(fd)
		}
		if err != nil {
			ws.Close()
			t.Fatalf("with fds below %d taken: %v", base, err)
		}
		err = p.Activate(t.Context(), Activation{Limits: limits.Defaults(), Control: []byte("print('ran')")})
		res, _ := p.Wait()
		ws.Close()
		if err != nil || res.Status != "ok" || string(res.Stdout) != "ran\n" || res.Isolation.Init != initKindBinary {
			t.Fatalf("with fds below %d taken: %v, status %s, init %q, stdout %q, reason %q; want ok from the init binary", base, err, res.Status, res.Isolation.Init, res.Stdout, res.Reason)
		}
	}
}

// takeFDs opens /dev/null at every free fd below n and returns them, so
// the next fd opened is n or above. F_DUPFD takes the lowest free number
// at once: nothing opened meanwhile by another goroutine is touched.
func takeFDs(t *testing.T, n int) []int {
	t.Helper()
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	var fds []int
	for {
		fd, err := unix.FcntlInt(null.Fd(), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		if fd >= n {
			unix.Close(fd)
			return fds
		}
		fds = append(fds, fd)
	}
}
