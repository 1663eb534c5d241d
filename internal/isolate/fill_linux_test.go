package isolate

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"testing/iotest"
	"time"

	"github.com/containerd/cgroups/v3/cgroup1"

	"github.com/sandboxd/sandboxd/internal/isolate/nsinit"
	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/testenv"
	"github.com/sandboxd/sandboxd/internal/workspace"
)

// startIdleSession starts a session whose program waits on its control
// pipe, under l, and ends it at the end of the test.
func startIdleSession(t testing.TB, r *Runner, l limits.Limits) *SessionProcess {
	t.Helper()
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		testenv.MissingFile(t, "/usr/bin/python3")
	}
	l = l.Merge(limits.Defaults())
	ws, err := r.NewWorkspace(l.Tmpfs)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := r.StartSession(t.Context(), ws, Exec{Argv: []string{"/usr/bin/python3", "-c", "import os; os.read(3, 1)"}, Limits: l})
	if err != nil {
		ws.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sp.Kill()
		_, _ = sp.Wait()
		if err := ws.Close(); err != nil {
			t.Errorf("close workspace: %v", err)
		}
	})
	if err := sp.Activate(t.Context()); err != nil {
		t.Fatal(err)
	}
	return sp
}

// memoryUsage is what the sandbox's memory cgroup holds now.
func memoryUsage(t *testing.T, sp *SessionProcess) int64 {
	t.Helper()
	var file string
	switch c := sp.cg.(type) {
	case *v1Cgroup:
		file = filepath.Join(c.d.dir(cgroup1.Memory, c.path), "memory.usage_in_bytes")
	case *v2Cgroup:
		file = filepath.Join(c.dir, "memory.current")
	default:
		t.Fatalf("a cgroup of type %T", sp.cg)
	}
	n, err := readUint(file)
	if err != nil {
		t.Fatal(err)
	}
	return int64(n)
}

// TestPutFileChargedToSession: a session's upload is charged to the
// session's memory cgroup (the filler writes it from there), not to the
// daemon's; the filler is the sandbox's init binary, or this binary when
// the sandbox's init was re-executed.
func TestPutFileChargedToSession(t *testing.T) {
	for _, c := range []struct{ name, init string }{{"init binary", testInit}, {"re-executed", InitReexec}} {
		t.Run(c.name, func(t *testing.T) {
			r := requireRunnerInit(t, c.init)
			sp := startIdleSession(t, r, limits.Limits{Memory: 256 * limits.MiB, Tmpfs: 128 * limits.MiB})
			if got, want := sp.initBin != nil, c.init != InitReexec; got != want {
				t.Fatalf("the session's init binary held: %v, want %v", got, want)
			}
			const size = 64 << 20
			before := memoryUsage(t, sp)
			n, err := sp.PutFile("in/big.bin", bytes.NewReader(bytes.Repeat([]byte{'x'}, size)), 0o600, 100<<20)
			if err != nil || n != size {
				t.Fatalf("PutFile = %d, %v; want %d bytes", n, err, size)
			}
			after := memoryUsage(t, sp)
			t.Logf("the session's cgroup: %d MiB before the upload, %d MiB after", before>>20, after>>20)
			if after-before < size*9/10 {
				t.Errorf("a %d MiB upload raised the session's memory usage by %d MiB", size>>20, (after-before)>>20)
			}
			f, info, err := sp.ws.OpenFile("in/big.bin")
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if info.Size != size || info.Mode != 0o600 {
				t.Errorf("the uploaded file: %+v", info)
			}
		})
	}
}

// TestPutFilePastMemoryLimit: an upload larger than the session's memory
// limit (but within its workspace) fails with a full workspace naming the
// limit; the filler is the OOM killer's victim, so the program lives on,
// the partial file is removed, and a bystander session still takes files.
func TestPutFilePastMemoryLimit(t *testing.T) {
	r := requireRunner(t)
	small := startIdleSession(t, r, limits.Limits{Memory: 48 * limits.MiB, Tmpfs: 256 * limits.MiB})
	bystander := startIdleSession(t, r, limits.Limits{})
	_, err := small.PutFile("big.bin", bytes.NewReader(make([]byte, 128<<20)), 0, 200<<20)
	if !errors.Is(err, workspace.ErrFull) || !strings.Contains(err.Error(), "memory limit of 48MiB") {
		t.Fatalf("an upload past the memory limit: %v; want a full workspace naming the limit", err)
	}
	t.Logf("the refusal: %v", err)
	if files, _, err := small.ws.ListFiles(".", 10); err != nil || len(files) != 0 {
		t.Errorf("after the refused upload the workspace holds %v (%v)", files, err)
	}
	select {
	case <-small.Done():
		t.Errorf("the OOM killer took the session's program, not the filler")
	case <-time.After(200 * time.Millisecond):
	}
	if _, err := small.PutFile("small.txt", strings.NewReader("still here"), 0, 1<<20); err != nil {
		t.Errorf("a small upload to the session after the refusal: %v", err)
	}
	if _, err := bystander.PutFile("b.txt", strings.NewReader("bystander"), 0, 1<<20); err != nil {
		t.Errorf("the bystander's upload: %v", err)
	}
}

// TestPutFileAfterEnd: once the sandbox has ended (its cgroup removed), an
// upload fails cleanly: no filler enters a removed cgroup.
func TestPutFileAfterEnd(t *testing.T) {
	r := requireRunner(t)
	sp := startIdleSession(t, r, limits.Limits{})
	sp.Kill()
	_, _ = sp.Wait()
	_, err := sp.PutFile("late.txt", strings.NewReader("late"), 0, 1<<20)
	if !errors.Is(err, errSandboxEnded) {
		t.Fatalf("an upload after the sandbox ended: %v", err)
	}
}

// TestWriteFilesCharged: files written in batches (more than one filler's
// worth) land whole, with their modes and directories, and are charged to
// the session.
func TestWriteFilesCharged(t *testing.T) {
	r := requireRunner(t)
	sp := startIdleSession(t, r, limits.Limits{Memory: 256 * limits.MiB, Tmpfs: 128 * limits.MiB})
	var files []run.File
	for i := range maxFillBatch*2 + 3 {
		files = append(files, run.File{Name: fmt.Sprintf("d%d/f%d.txt", i%5, i), Content: []byte(strings.Repeat("y", i)), Mode: 0o600})
	}
	files = append(files, run.File{Name: "big.bin", Content: bytes.Repeat([]byte{'z'}, 48<<20)}, run.File{Name: "empty"})
	before := memoryUsage(t, sp)
	if err := sp.WriteFiles(t.Context(), files); err != nil {
		t.Fatal(err)
	}
	after := memoryUsage(t, sp)
	t.Logf("the session's cgroup: %d MiB before the files, %d MiB after", before>>20, after>>20)
	if after-before < 40<<20 {
		t.Errorf("48 MiB of files raised the session's memory by %d MiB", (after-before)>>20)
	}
	for _, f := range files {
		fh, info, err := sp.ws.OpenFile(f.Name)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(fh)
		fh.Close()
		want := uint32(0o644)
		if f.Mode != 0 {
			want = f.Mode
		}
		if err != nil || !bytes.Equal(got, f.Content) || info.Mode != want {
			t.Fatalf("%s: %d bytes, mode %o (%v); want %d bytes, mode %o", f.Name, len(got), info.Mode, err, len(f.Content), want)
		}
	}
}

// TestPutFileClientFails: a body that fails half-way fails the upload
// with the body's error, not the filler's, and leaves no file.
func TestPutFileClientFails(t *testing.T) {
	r := requireRunner(t)
	sp := startIdleSession(t, r, limits.Limits{})
	gone := errors.New("the client went away")
	body := io.MultiReader(bytes.NewReader(make([]byte, 200<<10)), iotest.ErrReader(gone))
	if _, err := sp.PutFile("cut.bin", body, 0, 1<<20); !errors.Is(err, gone) {
		t.Fatalf("an upload whose body failed: %v; want the body's error", err)
	}
	if files, _, err := sp.ws.ListFiles(".", 10); err != nil || len(files) != 0 {
		t.Errorf("after the failed upload the workspace holds %v (%v)", files, err)
	}
}

// BenchmarkPutFile: a small upload written by the daemon itself (the
// baseline, charged to the daemon) and through a filler in the session's
// cgroup, in the same run: the filler's cost is its exec and, on cgroup
// v1, its move into the memory cgroup.
func BenchmarkPutFile(b *testing.B) {
	r := requireRunner(b)
	sp := startIdleSession(b, r, limits.Limits{})
	put := map[string]func() error{
		"daemon": func() error { _, err := sp.ws.PutFile("a.txt", strings.NewReader("hello"), 0, 1<<20); return err },
		"filler": func() error { _, err := sp.PutFile("a.txt", strings.NewReader("hello"), 0, 1<<20); return err },
	}
	per := map[string]time.Duration{}
	for _, name := range []string{"daemon", "filler"} {
		b.Run(name, func(b *testing.B) {
			start := time.Now()
			for b.Loop() {
				if err := put[name](); err != nil {
					b.Fatal(err)
				}
			}
			per[name] = time.Since(start) / time.Duration(b.N)
			if base := per["daemon"]; name != "daemon" && base > 0 {
				b.ReportMetric(float64(per[name])/float64(base), "x_daemon")
			}
		})
	}
}

// TestFillerPlacementV2Real: on a cgroup v2 hierarchy a filler is cloned
// straight into the sandbox's cgroup (no move after it started) as its
// OOM killer's first pick; once the cgroup is destroyed no filler enters
// it. On a hybrid host the v2 hierarchy has no controllers, which is
// enough for placement.
func TestFillerPlacementV2Real(t *testing.T) {
	dir := realV2Dir(t)
	s := &sandbox{r: &Runner{}, cg: &v2Cgroup{dir: dir}}
	defer s.destroyCgroup()
	in, feed, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	defer feed.Close()
	filler := func() *exec.Cmd {
		return &exec.Cmd{Path: "/proc/self/exe", Args: []string{nsinit.FillArg0}, Stdin: in, SysProcAttr: &syscall.SysProcAttr{}}
	}
	cmd := filler()
	if err := s.startInCgroup(cmd); err != nil {
		t.Fatal(err)
	}
	pid := strconv.Itoa(cmd.Process.Pid)
	if procs := readFile(t, filepath.Join(dir, "cgroup.procs")); procs != pid {
		t.Errorf("cgroup.procs = %q, want the filler %s", procs, pid)
	}
	if adj := readFile(t, "/proc/"+pid+"/oom_score_adj"); adj != fillerOOMScoreAdj {
		t.Errorf("the filler's oom_score_adj = %s, want %s", adj, fillerOOMScoreAdj)
	}
	feed.Close() // no file: the filler exits at once
	if err := cmd.Wait(); err != nil {
		t.Errorf("the filler with nothing to write: %v", err)
	}
	s.destroyCgroup()
	if err := s.startInCgroup(filler()); !errors.Is(err, errSandboxEnded) {
		t.Errorf("a filler into a destroyed cgroup: %v, want errSandboxEnded", err)
	}
}
