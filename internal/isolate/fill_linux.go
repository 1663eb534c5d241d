package isolate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"syscall"

	"github.com/sandboxd/sandboxd/internal/isolate/nsinit"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/workspace"
)

// A session's workspace is a tmpfs, and a tmpfs page is charged to the
// memory cgroup of the process that first writes it. Written by the
// daemon, an upload would be charged to the daemon: out of the session's
// memory limit, and on the daemon's. So a session's uploads are written
// by a filler (nsinit/fill.go): this binary re-executed, placed in the
// session's memory cgroup before it is given a byte. It is the preferred
// victim of that cgroup's OOM killer, so an upload past the session's
// memory limit kills the filler, not the kernel.

// errSandboxEnded: the sandbox ended (its cgroup is gone) before a filler
// could enter it.
var errSandboxEnded = errors.New("the sandbox has ended")

// fillerOOMScoreAdj makes the filler the first process its cgroup's OOM
// killer picks: the tmpfs pages it fills count for no process.
const fillerOOMScoreAdj = "1000"

// maxFillReport bounds what is read of a filler's stdout and stderr.
const maxFillReport = 4 << 10

// PutFile is Workspace.PutFile with the bytes written from inside the
// session's memory cgroup (see above): they count against the session's
// memory limit, as the kernel's own writes do. An upload past that limit
// fails with workspace.ErrFull, naming the limit; the file is removed and
// the kernel goes on.
func (sp *SessionProcess) PutFile(name string, r io.Reader, mode os.FileMode, maxBytes int64) (int64, error) {
	return sp.ws.putFile(name, r, mode, maxBytes, sp.fillCharged)
}

// fillCharged copies r into f through a filler in the sandbox's cgroup.
func (sp *SessionProcess) fillCharged(f *os.File, r io.Reader) (int64, error) {
	before, _ := sp.cg.stats()
	in, feed, err := os.Pipe()
	if err != nil {
		return 0, fmt.Errorf("create the filler's pipe: %w", err)
	}
	defer feed.Close()
	var stdout, stderr bytes.Buffer
	cmd := &exec.Cmd{
		Path:       "/proc/self/exe",
		Args:       []string{nsinit.FillArg0},
		Env:        []string{},
		Stdin:      in,
		Stdout:     &capWriter{b: &stdout, max: maxFillReport},
		Stderr:     &capWriter{b: &stderr, max: maxFillReport},
		ExtraFiles: []*os.File{f},
		// If the daemon dies, so does the filler.
		SysProcAttr: &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL},
	}
	err = sp.startInCgroup(cmd)
	in.Close()
	if err != nil {
		return 0, err
	}
	fed, feedErr := io.Copy(feed, r)
	feed.Close()
	waitErr := cmd.Wait()
	var res nsinit.FillResult
	if waitErr == nil {
		if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
			return 0, fmt.Errorf("the filler's report %s: %w", run.Quote(stdout.String(), run.MaxName), err)
		}
	}
	switch {
	case waitErr != nil:
		return 0, sp.fillerDied(waitErr, before, stderr.String())
	case res.Error != "":
		return res.Written, fillError(res)
	case feedErr != nil:
		// The client's body failed (a disconnect, a read deadline).
		return res.Written, feedErr
	case res.Written != fed:
		return res.Written, fmt.Errorf("the filler wrote %d of %d bytes", res.Written, fed)
	}
	return res.Written, nil
}

// startInCgroup starts cmd in the sandbox's cgroup, as the most likely
// victim of its OOM killer, before cmd is given anything to do: cloned
// into it on cgroup v2, moved into its memory controller on v1 (see
// runCgroup.addMemory).
func (s *sandbox) startInCgroup(cmd *exec.Cmd) error {
	s.cgMu.RLock()
	defer s.cgMu.RUnlock()
	if s.cgGone {
		return errSandboxEnded
	}
	if fd := s.cg.fd(); fd >= 0 {
		cmd.SysProcAttr.UseCgroupFD = true
		cmd.SysProcAttr.CgroupFD = fd
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start a filler in the sandbox's cgroup: %w", err)
	}
	pid := cmd.Process.Pid
	err := os.WriteFile("/proc/"+strconv.Itoa(pid)+"/oom_score_adj", []byte(fillerOOMScoreAdj), 0)
	if err == nil {
		err = s.cg.addMemory(pid)
	}
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return fmt.Errorf("place the filler in the sandbox's cgroup: %w", err)
	}
	return nil
}

// fillerDied says why a filler ended without its report: the session's
// memory limit (its cgroup counted an OOM kill meanwhile), the sandbox's
// end, or something else.
func (sp *SessionProcess) fillerDied(waitErr error, before cgroupStats, stderr string) error {
	select {
	case <-sp.done:
		return fmt.Errorf("%w during the upload", errSandboxEnded)
	default:
	}
	if after, err := sp.cg.stats(); err == nil && after.OOMKills > before.OOMKills {
		return fmt.Errorf("%w: the session's memory limit of %s was reached, and its workspace files count against it", workspace.ErrFull, sp.limits.Memory)
	}
	if stderr != "" {
		return fmt.Errorf("the filler failed: %w: %s", waitErr, run.Clip(stderr, run.MaxMessage))
	}
	return fmt.Errorf("the filler failed: %w", waitErr)
}

// fillError is the error a filler reported, its errno kept so fileError
// can class it (ENOSPC is a full workspace).
func fillError(res nsinit.FillResult) error {
	if res.Errno != 0 {
		return &os.PathError{Op: res.Op, Path: "the file", Err: syscall.Errno(res.Errno)}
	}
	return fmt.Errorf("the filler's %s: %s", res.Op, run.Clip(res.Error, run.MaxMessage))
}

// capWriter keeps the first max bytes written to it and drops the rest.
type capWriter struct {
	b   *bytes.Buffer
	max int
}

func (w *capWriter) Write(p []byte) (int, error) {
	if room := w.max - w.b.Len(); room > 0 {
		w.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
