package isolate

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

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
	return sp.ws.putFile(name, r, mode, maxBytes, func(f *os.File, r io.Reader) (int64, error) {
		ns, err := sp.fillCharged([]*os.File{f}, []io.Reader{r})
		return ns[0], err
	})
}

// maxFillBatch is how many files one filler writes at most: each is an
// open fd in it.
const maxFillBatch = 64

// WriteFiles writes files into the workspace (as Workspace.WriteFile,
// names checked the same way) from inside the session's memory cgroup,
// one filler per batch of them: a session's files given at its creation
// are charged to it as its uploads are. ctx is checked between batches.
func (sp *SessionProcess) WriteFiles(ctx context.Context, files []run.File) error {
	for len(files) > 0 {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("place the files: %w", err)
		}
		batch := files[:min(len(files), maxFillBatch)]
		files = files[len(batch):]
		if err := sp.writeBatch(batch); err != nil {
			return err
		}
	}
	return nil
}

// writeBatch writes files through one filler.
func (sp *SessionProcess) writeBatch(files []run.File) error {
	var (
		opened []*newFile
		fs     []*os.File
		rs     []io.Reader
	)
	defer func() {
		for _, nf := range opened {
			nf.Close()
			nf.release()
		}
	}()
	for _, f := range files {
		nf, err := sp.ws.createFile(f.Name, os.FileMode(f.Mode))
		if err != nil {
			return err
		}
		opened = append(opened, nf)
		fs, rs = append(fs, nf.File), append(rs, bytes.NewReader(f.Content))
	}
	ns, err := sp.fillCharged(fs, rs)
	for i, f := range files {
		if err == nil && ns[i] != int64(len(f.Content)) {
			err = fmt.Errorf("wrote %d of its %d bytes", ns[i], len(f.Content))
		}
		if err != nil {
			return fileError("write", opened[i].name, err)
		}
	}
	return nil
}

// fillCharged copies each of rs into the file of fs at its index through a
// filler in the sandbox's cgroup, and says how many bytes it wrote into
// each (as many as fs, whatever the error).
func (sp *SessionProcess) fillCharged(fs []*os.File, rs []io.Reader) ([]int64, error) {
	written := make([]int64, len(fs))
	before, _ := sp.cg.stats()
	in, feed, err := os.Pipe()
	if err != nil {
		return written, fmt.Errorf("create the filler's pipe: %w", err)
	}
	defer feed.Close()
	var stdout, stderr bytes.Buffer
	filler := func(path string, files []*os.File) *exec.Cmd {
		return &exec.Cmd{
			Path:       path,
			Args:       []string{nsinit.FillArg0},
			Env:        []string{},
			Stdin:      in,
			Stdout:     &capWriter{b: &stdout, max: maxFillReport * len(fs)},
			Stderr:     &capWriter{b: &stderr, max: maxFillReport},
			ExtraFiles: files,
			// If the daemon dies, so does the filler.
			SysProcAttr: &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL},
		}
	}
	var cmd *exec.Cmd
	if ib := sp.initBin; ib != nil {
		// The sandbox's own init binary, of this build (its init said
		// so in its hello), starts in a fraction of the time this one
		// does: 4 MB and few package inits, against the daemon's 27 MB
		// and 3.5 ms of them.
		files, path := ib.pass(fs, nsinit.FillFD)
		cmd = filler(path, files)
		if err = sp.startInCgroup(cmd); errors.Is(err, os.ErrPermission) {
			cmd = nil // its execve refused since: this binary, as below
		}
	}
	if cmd == nil {
		cmd = filler("/proc/self/exe", fs)
		err = sp.startInCgroup(cmd)
	}
	in.Close()
	if err != nil {
		return written, err
	}
	fed, readErr, writeErr := feedChunks(feed, rs)
	feed.Close()
	if waitErr := cmd.Wait(); waitErr != nil {
		return written, sp.fillerDied(waitErr, before, stderr.String())
	}
	if readErr != nil {
		// The client's body failed (a disconnect, a read deadline): the
		// filler saw its file cut short, and nothing else is wrong.
		return written, readErr
	}
	dec := json.NewDecoder(&stdout)
	for i := range fed {
		var res nsinit.FillResult
		if err := dec.Decode(&res); err != nil {
			return written, fmt.Errorf("the filler's report on file %d of %d: %w", i+1, len(fs), err)
		}
		written[i] = res.Written
		switch {
		case res.Error != "":
			return written, fillError(res)
		case res.Written != fed[i]:
			return written, fmt.Errorf("the filler wrote %d of %d bytes", res.Written, fed[i])
		}
	}
	return written, writeErr
}

// feedChunks writes each of rs to the filler as chunks, each file's ended
// by an empty one, and says how many bytes of each it sent (for each file
// it began). It stops at the first error: reading one of rs (readErr) or
// writing to the filler (writeErr, when the filler stopped reading).
func feedChunks(w io.Writer, rs []io.Reader) (fed []int64, readErr, writeErr error) {
	buf := make([]byte, 8+64<<10)
	for _, r := range rs {
		fed = append(fed, 0)
		n := &fed[len(fed)-1]
		for {
			m, err := r.Read(buf[8:])
			if m > 0 {
				binary.BigEndian.PutUint64(buf[:8], uint64(m))
				if _, werr := w.Write(buf[:8+m]); werr != nil {
					return fed, nil, fmt.Errorf("feed the filler: %w", werr)
				}
				*n += int64(m)
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return fed, err, nil
			}
		}
		binary.BigEndian.PutUint64(buf[:8], 0)
		if _, err := w.Write(buf[:8]); err != nil {
			return fed, nil, fmt.Errorf("feed the filler: %w", err)
		}
	}
	return fed, nil, nil
}

// startInCgroup starts cmd in the sandbox's cgroup, as the most likely
// victim of its OOM killer, before cmd is given anything to do: cloned
// into it on cgroup v2; on v1 it joins the memory controller itself by
// the `tasks` file passed as its last fd, named by its argv[1]
// (nsinit/fill.go), as init joins its cgroup: a move by pid would wait
// out an RCU grace period after a quiet spell.
func (s *sandbox) startInCgroup(cmd *exec.Cmd) error {
	s.cgMu.RLock()
	defer s.cgMu.RUnlock()
	if s.cgGone {
		return errSandboxEnded
	}
	fd, err := s.cg.openDir()
	if err != nil {
		return fmt.Errorf("start a filler in the sandbox's cgroup: %w", err)
	}
	if fd >= 0 {
		defer unix.Close(fd)
		cmd.SysProcAttr.UseCgroupFD = true
		cmd.SysProcAttr.CgroupFD = fd
	}
	tasks, err := s.cg.openMemoryTasks()
	if err != nil {
		return fmt.Errorf("start a filler in the sandbox's cgroup: %w", err)
	}
	if tasks != nil {
		defer tasks.Close()
		cmd.ExtraFiles = append(cmd.ExtraFiles, tasks)
		cmd.Args = append(cmd.Args, strconv.Itoa(nsinit.FillFD+len(cmd.ExtraFiles)-1))
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start a filler in the sandbox's cgroup: %w", err)
	}
	if err := os.WriteFile("/proc/"+strconv.Itoa(cmd.Process.Pid)+"/oom_score_adj", []byte(fillerOOMScoreAdj), 0); err != nil {
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
