package isolate

import (
	"bufio"
	"bytes"
	"debug/elf"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sandboxd/sandboxd/internal/isolate/nsinit"
	"github.com/sandboxd/sandboxd/internal/limits"
)

// TestReaperCode: reaperCode is testdata/reaper_amd64.s, assembled.
func TestReaperCode(t *testing.T) {
	if reaperMachine != elf.EM_X86_64 {
		t.Skip("the reaper's source is x86-64 assembly; this is another architecture")
	}
	as, err := exec.LookPath("as")
	if err != nil {
		t.Skip("needs GNU as (binutils, installed with gcc by scripts/test) to assemble testdata/reaper_amd64.s:", err)
	}
	dir := t.TempDir()
	obj, bin := filepath.Join(dir, "r.o"), filepath.Join(dir, "r.bin")
	for _, c := range [][]string{{as, "-o", obj, "testdata/reaper_amd64.s"}, {"objcopy", "-O", "binary", "-j", ".text", obj, bin}} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(c, " "), err, out)
		}
	}
	want, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(reaperCode, want) {
		t.Errorf("reaperCode (%d bytes) is not testdata/reaper_amd64.s assembled (%d bytes): copy the bytes over", len(reaperCode), len(want))
	}
}

// playInitEnv makes this test binary play init for TestReaperStatuses: it
// starts the program (its argv after the marker), becomes a subreaper so
// that the program's orphans come to it as they would to PID 1, and
// executes the reaper (inherited at fd 5, the status pipe at fd 4).
const playInitEnv = "SANDBOXD_TEST_PLAY_INIT"

func maybePlayInit() {
	if os.Getenv(playInitEnv) != "1" {
		return
	}
	attr := &syscall.ProcAttr{Files: []uintptr{0, 1, 2}}
	pid, err := syscall.ForkExec(os.Args[1], os.Args[1:], attr)
	if err == nil {
		err = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	}
	if err == nil {
		err = syscall.Exec("/proc/self/fd/5", []string{nsinit.Arg0}, []string{strconv.Itoa(pid)})
	}
	os.Stderr.WriteString("play init: " + err.Error() + "\n")
	os.Exit(2)
}

// TestReaperStatuses runs the reaper as init runs it (see playInitEnv) and
// reads its one message as the parent does: the program's exit code or
// signal, whatever other children exit first, and its orphans reaped
// while it runs. Outside any sandbox: the reaper's own behaviour.
func TestReaperStatuses(t *testing.T) {
	reaper, err := openReaper()
	if err != nil {
		t.Fatal(err)
	}
	if reaper == nil {
		t.Skip("no reaper for this architecture")
	}
	defer reaper.Close()
	for _, c := range []struct {
		name string
		sh   string
		want nsinit.ExitStatus
	}{
		{"exit 0", "exit 0", nsinit.ExitStatus{}},
		{"exit 3", "exit 3", nsinit.ExitStatus{Code: 3}},
		{"exit 255", "exit 255", nsinit.ExitStatus{Code: 255}},
		{"SIGKILL", "kill -KILL $$", nsinit.ExitStatus{Code: -1, Signal: 9}},
		{"SIGTERM", "kill -TERM $$", nsinit.ExitStatus{Code: -1, Signal: 15}},
		// A child of the program that exits first is not the program.
		{"a child first", "sh -c 'exit 7' & wait; exit 4", nsinit.ExitStatus{Code: 4}},
		// An orphan (the subshell's child, reparented to the reaper
		// when the subshell exits, before "ready") is reaped while the
		// program still runs: checked below.
		{"an orphan", "(sh -c 'exit 9' &); echo ready; read x; exit 5", nsinit.ExitStatus{Code: 5}},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, statusW, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer status.Close()
			stdin, stdinW, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer stdinW.Close()
			cmd := exec.Command("/proc/self/exe", "/bin/sh", "-c", c.sh)
			cmd.Env = append(os.Environ(), playInitEnv+"=1")
			cmd.Stdin, cmd.Stderr = stdin, os.Stderr
			cmd.ExtraFiles = []*os.File{nil, statusW, reaper}
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			err = cmd.Start()
			stdin.Close()
			statusW.Close()
			if err != nil {
				t.Fatal(err)
			}
			if c.name == "an orphan" {
				line, err := bufio.NewReader(stdout).ReadString('\n')
				if err != nil || line != "ready\n" {
					t.Fatalf("the program said %q (%v), want ready", line, err)
				}
				awaitOnlyChild(t, cmd.Process.Pid)
			}
			stdinW.Close()
			var m nsinit.Message
			if err := json.NewDecoder(status).Decode(&m); err != nil {
				t.Fatalf("the reaper's message: %v", err)
			}
			if err := cmd.Wait(); err != nil {
				t.Errorf("the reaper exited with %v, want 0", err)
			}
			if m.Exit == nil || *m.Exit != c.want {
				t.Errorf("the reaper sent %+v, want exit %+v", m, c.want)
			}
		})
	}
}

// awaitOnlyChild waits until the reaper (pid; it names itself as init
// once it runs) has one child left, the program: the orphan it was given
// exited and was reaped, not left a zombie.
func awaitOnlyChild(t *testing.T, pid int) {
	t.Helper()
	path := "/proc/" + strconv.Itoa(pid) + "/task/" + strconv.Itoa(pid) + "/children"
	var children []string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		comm, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		children = strings.Fields(string(b))
		if strings.TrimSpace(string(comm)) == nsinit.Arg0 && len(children) == 1 {
			return
		}
	}
	t.Fatalf("the reaper still has children %v: the orphan was not reaped", children)
}

// TestReaperIsPID1: a sandbox's PID 1, once its program runs, is the
// reaper: one thread, the memfd's code, a few KiB of memory, and init's
// name and command line as the sandbox sees them.
func TestReaperIsPID1(t *testing.T) {
	r := requireRunner(t)
	if r.reaper == nil {
		t.Skip("no reaper for this architecture")
	}
	ws, err := r.NewWorkspace(limits.Defaults().Tmpfs)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	sp, err := r.StartSession(t.Context(), ws, Exec{Argv: []string{"/usr/bin/python3", "-c", "import os; os.read(3, 1)"}, Limits: limits.Defaults()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { sp.Kill(); _, _ = sp.Wait() }()
	proc := "/proc/" + strconv.Itoa(sp.initPid) + "/"
	// The exec follows the program's start; the name, the reaper's
	// first call.
	var exe string
	var comm []byte
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		exe, _ = os.Readlink(proc + "exe")
		comm, _ = os.ReadFile(proc + "comm")
		if strings.Contains(exe, "sandboxd-reaper") && string(comm) == nsinit.Arg0+"\n" {
			break
		}
	}
	if !strings.HasPrefix(exe, "/memfd:sandboxd-reaper") {
		t.Fatalf("PID 1 runs %q, want the reaper's memfd", exe)
	}
	cmdline, _ := os.ReadFile(proc + "cmdline")
	if string(comm) != nsinit.Arg0+"\n" || string(cmdline) != nsinit.Arg0+"\x00" {
		t.Errorf("PID 1 is named %q, command line %q; want init's, %q", comm, cmdline, nsinit.Arg0)
	}
	status, _ := os.ReadFile(proc + "status")
	var threads, rssAnon string
	for _, l := range strings.Split(string(status), "\n") {
		if f := strings.Fields(l); len(f) >= 2 {
			switch f[0] {
			case "Threads:":
				threads = f[1]
			case "RssAnon:":
				rssAnon = f[1]
			}
		}
	}
	if kb, err := strconv.Atoi(rssAnon); threads != "1" || err != nil || kb > 64 {
		t.Errorf("PID 1 has %s threads and %s KiB anonymous memory, want 1 and a few", threads, rssAnon)
	}
	// It still reaps and reports: the program's exit is the session's end.
	if _, err := sp.Control().Write([]byte{'x'}); err != nil {
		t.Fatal(err)
	}
	res, _ := sp.Wait()
	if res == nil || res.ExitCode != 0 {
		t.Errorf("the program's result %+v, want exit 0", res)
	}
}

// TestReaperSealed: the reaper every init executes cannot be changed, by
// host root either: no write, no truncation, no growth, no unsealing, no
// write through a new open of it.
func TestReaperSealed(t *testing.T) {
	reaper, err := processReaper()
	if err != nil {
		t.Fatal(err)
	}
	if reaper == nil {
		t.Skip("no reaper for this architecture")
	}
	if _, err := reaper.WriteAt([]byte{0xcc}, 120); err == nil {
		t.Error("wrote into the reaper's code")
	}
	if err := reaper.Truncate(0); err == nil {
		t.Error("truncated the reaper")
	}
	if _, err := unix.FcntlInt(reaper.Fd(), unix.F_ADD_SEALS, unix.F_SEAL_EXEC); err == nil {
		t.Error("changed the reaper's seals")
	}
	if f, err := os.OpenFile("/proc/self/fd/"+strconv.Itoa(int(reaper.Fd())), os.O_WRONLY, 0); err == nil {
		_, werr := f.Write([]byte{0xcc})
		f.Close()
		if werr == nil {
			t.Error("wrote into the reaper through a new open of it")
		}
	}
	code := make([]byte, len(reaperCode))
	if _, err := reaper.ReadAt(code, int64(len(reaperELF(reaperMachine, nil)))); err != nil || !bytes.Equal(code, reaperCode) {
		t.Errorf("the reaper's code changed: %v", err)
	}
}
