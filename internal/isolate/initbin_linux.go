package isolate

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/sandboxd/sandboxd/internal/isolate/nsinit"
)

// The init stage is either the small cmd/sandboxd-init beside this
// executable (runc's split: each run then starts a 3-4 MB binary that
// initialises nsinit and nothing else) or, when that is absent or refused,
// this binary re-executed through /proc/self/exe, as before. Both run the
// same nsinit code; the init binary is used only when its hello carries
// this binary's nsinit.Build (sandbox_linux.go, configure), so a stale one
// from an older install never builds a sandbox.
//
// Init is executed by the sandbox's setup uid inside the new user
// namespace, which can traverse none of root's private directories
// (go install puts binaries in /root/go/bin). So the binary is opened here,
// once, and executed through /proc/self/fd/N as /proc/self/exe is: the
// magic link needs no path walk, and what runs is the inode checked here,
// whatever later happens to the path.

// Kinds of init, as results (run.Isolation.Init) and doctor report them.
const (
	initKindBinary = "sandboxd-init"
	initKindReexec = "reexec"
)

// initBinary is an init binary that passed the checks, held open.
type initBinary struct {
	path string
	fd   *os.File
}

// pass adds the init binary to the files a child is started with, the
// first of which it gets as fd first, and returns the path the child
// executes it by: /proc/self/fd/N, N its place there. Only a passed fd's
// number is known at execve: os/exec's child parks the fds it must move
// at any number above the highest one passed, so a binary held at a
// number of its own (it was 64) was replaced whenever a run's fds were
// numbered just below it, and the child executed what had been parked
// there (RATIONALE, "The init binary is passed, not held at a number").
func (ib *initBinary) pass(files []*os.File, first int) ([]*os.File, string) {
	return append(files, ib.fd), "/proc/self/fd/" + strconv.Itoa(first+len(files))
}

// openInit finds and checks the init binary for Config.Init (mode). It
// returns nil and no error when none is wanted or none is there, nil and
// the reason when one is there but refused.
func openInit(mode string) (*initBinary, error) {
	if mode == InitAuto {
		mode = os.Getenv(InitEnv)
	}
	path := mode
	switch mode {
	case InitReexec:
		return nil, nil
	case InitAuto:
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find this executable: %w", err)
		}
		path = filepath.Join(filepath.Dir(exe), InitBinaryName)
		if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
	default:
		if !filepath.IsAbs(path) {
			return nil, fmt.Errorf("init binary %q: want an absolute path, %q or %q", path, InitReexec, "")
		}
	}
	// O_PATH: held to be executed, never read; O_NOFOLLOW: a symlink
	// there is refused (it is not a regular file), not followed.
	fd, err := unix.Open(path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	if err := trustedInit(f, path); err != nil {
		f.Close()
		return nil, err
	}
	return &initBinary{path: path, fd: f}, nil
}

// trustedInit checks the opened init binary and its directory: each owned
// by root or this process's uid and writable by no one else (whoever could
// replace it would run code as every sandbox's PID 1, before seccomp), the
// binary a regular file the sandbox's uids may execute.
func trustedInit(f *os.File, path string) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("init binary %s is not a regular file", path)
	}
	if err := trustedOwner(path, &st); err != nil {
		return err
	}
	if st.Mode&0o001 == 0 {
		return fmt.Errorf("init binary %s has mode %o: the sandbox's uids must be able to execute it (chmod o+x)", path, st.Mode&0o7777)
	}
	dir := filepath.Dir(path)
	if err := unix.Stat(dir, &st); err != nil {
		return &os.PathError{Op: "stat", Path: dir, Err: err}
	}
	return trustedOwner(dir, &st)
}

func trustedOwner(path string, st *unix.Stat_t) error {
	if st.Uid != 0 && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%s is owned by uid %d, neither root nor this process's", path, st.Uid)
	}
	if st.Mode&0o022 != 0 {
		return fmt.Errorf("%s has mode %o: writable by group or others", path, st.Mode&0o7777)
	}
	return nil
}

// staleInitError: an init binary's hello carried another build.
type staleInitError struct {
	path, build string
}

func (e *staleInitError) Error() string {
	return fmt.Sprintf("init binary %s is of another build (%.12s, this binary's is %.12s): reinstall both from one checkout (go install ./cmd/...)", e.path, e.build, nsinit.Build())
}

// initExec is how the next sandbox's init is started: the path, and the
// kind its result reports.
func (r *Runner) initExec() (kind string, ib *initBinary) {
	r.initMu.Lock()
	defer r.initMu.Unlock()
	if r.init == nil {
		return initKindReexec, nil
	}
	return initKindBinary, r.init
}

// refuseInit stops using ib after its hello was of another build; the
// runs from now on re-execute this binary.
func (r *Runner) refuseInit(ib *initBinary, err error) {
	r.initMu.Lock()
	defer r.initMu.Unlock()
	if r.init != ib {
		return
	}
	r.init = nil
	r.log.Warn("not using the init binary: runs re-execute this binary instead, and start slower", "err", err)
	// Not closed: a run started with it may still be in clone.
}

// InitKind says which init the next run starts: "sandboxd-init" (the
// binary beside this one) or "reexec" (this binary, re-executed).
func (r *Runner) InitKind() string {
	kind, _ := r.initExec()
	return kind
}

// checkInit is doctor's line on the init stage: whether runs start the
// small init binary or re-execute this one, and why.
func checkInit() Check {
	c := Check{Name: "init binary", OK: true}
	ib, err := openInit(InitAuto)
	switch {
	case err != nil:
		c.OK = false
		c.Detail = "refused, runs re-execute this binary (slower start): " + err.Error()
		c.Fix = "install " + InitBinaryName + " beside this binary, owned by root, mode 0755 (go install ./cmd/...)"
		return c
	case ib == nil:
		c.OK = false
		c.Detail = "none beside this binary: runs re-execute this binary, whose start-up every run pays"
		c.Fix = "install " + InitBinaryName + " beside this binary (go install ./cmd/...)"
		if os.Getenv(InitEnv) == InitReexec {
			c.Detail = InitEnv + "=" + InitReexec + ": runs re-execute this binary"
			c.Fix = ""
		}
		return c
	}
	defer ib.fd.Close()
	build, err := initBuild(ib)
	if err == nil && build != nsinit.Build() {
		err = &staleInitError{path: ib.path, build: build}
	}
	if err != nil {
		c.OK = false
		c.Detail = "refused, runs re-execute this binary (slower start): " + err.Error()
		c.Fix = "reinstall both from one checkout (go install ./cmd/...)"
		return c
	}
	c.Detail = ib.path + ": same build, trusted; each run starts it as its init"
	return c
}

// initBuild asks an init binary its Build.
func initBuild(ib *initBinary) (string, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return "", err
	}
	defer r.Close()
	files, exe := ib.pass([]*os.File{nil, w, nil}, 0)
	p, err := os.StartProcess(exe, []string{nsinit.BuildArg0}, &os.ProcAttr{
		Env:   []string{},
		Files: files,
		Sys:   &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL},
	})
	w.Close()
	if err != nil {
		return "", fmt.Errorf("start %s: %w", ib.path, err)
	}
	var b [128]byte
	n, _ := r.Read(b[:])
	st, err := p.Wait()
	if err != nil || !st.Success() || n == 0 || b[n-1] != '\n' {
		return "", fmt.Errorf("%s did not tell its build (%v)", ib.path, st)
	}
	return string(b[:n-1]), nil
}
