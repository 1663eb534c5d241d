package isolate

import (
	"bufio"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sandboxd/sandboxd/internal/run"
)

// A Zygote is a fork server: one interpreter, started once on the host
// with its runtime's warm runner (its start-up and common imports done),
// that forks each run's process into a sandbox a warm pool made ahead
// (StartEntered). A pooled run then pays for a fork instead of an
// interpreter's start, which is most of a pooled run's CPU.
//
// The sandbox is the one every run gets, built by init as always: init,
// instead of the program, starts a placeholder (nsinit.Config.Enter) and
// becomes the reaper. What enters it is the run's process, a child the
// zygote forks straight into its pid namespace (zygote.py says each
// step): it enters the placeholder's other namespaces through its pidfd,
// joins the run's cgroup and cgroup namespace, drops every capability,
// takes the run's ids and seccomp filter and runs the program; the
// server reaps it and reports its status as init's last message. What
// the run's process shares with the zygote is the interpreter's memory
// as it was at the zygote's start, which holds nothing of any run: the
// server passes each request's descriptors on unread (it keeps two, the
// status pipe and init's pidfd, to report and end the run), and only the
// forked child reads the run's config. RATIONALE.md ("A fork server")
// argues what that sharing means and why it is safe.
type Zygote struct {
	r *Runner
	// argv starts the interpreter on the warm runner (fd 4) in its
	// zygote mode; env is the warm runner's environment; runner the warm
	// runner's source.
	argv, env []string
	runner    []byte
	// interp is the interpreter and its flags, as a run's command line
	// starts.
	interp []string

	// maxRuns and maxAge bound one server's life (zygoteMaxRuns,
	// zygoteMaxAge; tests lower them).
	maxRuns int
	maxAge  time.Duration

	mu   sync.Mutex
	conn *net.UnixConn
	proc *os.Process
	// exited is closed once proc is reaped.
	exited chan struct{}
	// served is how many requests proc took.
	served int
	// pending are the requests sent on conn and not yet answered, oldest
	// first: each one's lost, called if the server answers that it could
	// not fork, or is gone before it answered.
	pending *[]func()
	// runs are the runs proc took, for orphaned.
	runs   *[]zygoteRun
	closed bool
}

// zygoteRun is a run a server took: kill ends it, done is closed when it
// has ended.
type zygoteRun struct {
	kill func()
	done <-chan struct{}
}

// ended reports whether r is done.
func (r zygoteRun) ended() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

//go:embed zygote.py
var zygoteSource []byte

// A server serves at most zygoteMaxRuns runs, and none once zygoteMaxAge
// old: then a new one, with a new address layout and str hash seed, is
// started in its place at once (not by the next run, which would wait
// for it), so that no one layout or seed is shared by more runs, or for
// longer, than that. The old one takes no more requests, waits for its
// runs to end and exits. (A start costs some 40 ms of CPU: a thousandth
// of its runs'.)
const (
	zygoteMaxRuns = 1000
	zygoteMaxAge  = 10 * time.Minute
)

// NewZygote returns a fork server for a runtime whose warm runner is
// runner (source), run by interp (its binary and flags) with env, as the
// warm pool starts it in each sandbox. It starts in the background now,
// and again on the first use after it died.
func (r *Runner) NewZygote(interp []string, runner []byte, env []string) (*Zygote, error) {
	if r.reaper == nil {
		return nil, errNoReaper
	}
	argv := append(append([]string{}, interp...), "/proc/self/fd/4", "--zygote")
	z := &Zygote{r: r, argv: argv, env: env, runner: runner, interp: interp, maxRuns: zygoteMaxRuns, maxAge: zygoteMaxAge}
	go func() {
		z.mu.Lock()
		defer z.mu.Unlock()
		if z.conn == nil && !z.closed {
			if err := z.start(); err != nil {
				r.log.Warn("start the fork server", "err", err)
			}
		}
	}()
	return z, nil
}

// start starts the server; z.mu is held.
func (z *Zygote) start() error {
	if err := checkHostHome(z.env); err != nil {
		return err
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("socketpair", err)
	}
	mine, theirs := os.NewFile(uintptr(fds[0]), "zygote"), os.NewFile(uintptr(fds[1]), "zygote")
	defer theirs.Close()
	runner, err := sealedFile("sandboxd-warm-runner", z.runner, false)
	if err != nil {
		mine.Close()
		return err
	}
	defer runner.Close()
	code, err := sealedFile("sandboxd-zygote", zygoteSource, false)
	if err != nil {
		mine.Close()
		return err
	}
	defer code.Close()
	// What the server and its children write to stderr before a run's
	// process takes its own (tracebacks, if ever) is the daemon's log's.
	logR, logW, err := os.Pipe()
	if err != nil {
		mine.Close()
		return err
	}
	defer logW.Close()
	cmd := exec.Command(z.argv[0], z.argv[1:]...)
	cmd.Env = z.env
	cmd.Dir = "/"
	cmd.Stderr = logW
	cmd.ExtraFiles = []*os.File{theirs, runner, code}
	// It dies with the daemon (its socket's EOF ends it too).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setsid: true}
	if err := cmd.Start(); err != nil {
		mine.Close()
		logR.Close()
		return fmt.Errorf("start the fork server: %w", err)
	}
	go z.logStderr(logR)
	c, err := net.FileConn(mine)
	mine.Close()
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return err
	}
	z.conn, z.proc, z.exited = c.(*net.UnixConn), cmd.Process, make(chan struct{})
	z.served = 0
	proc := cmd.Process
	time.AfterFunc(z.maxAge, func() {
		z.mu.Lock()
		defer z.mu.Unlock()
		if z.proc == proc && !z.closed {
			z.renew()
		}
	})
	z.pending = new([]func())
	z.runs = new([]zygoteRun)
	exited, runs := z.exited, z.runs
	go func() {
		_ = cmd.Wait()
		close(exited)
		z.orphaned(runs)
	}()
	go z.answers(z.conn, z.pending)
	return nil
}

// orphaned ends the runs of a server that has exited and are still
// going: the server is their parent and reports their end, and with it
// gone a run would wait for its deadline and end with no status. (A
// server let go exits only once its runs have ended and been reported.)
func (z *Zygote) orphaned(runs *[]zygoteRun) {
	z.mu.Lock()
	left := *runs
	*runs = nil
	z.mu.Unlock()
	for _, r := range left {
		if !r.ended() {
			r.kill()
		}
	}
}

// logStderr logs each line r gives until every writer (the server and
// its children, until each run's process takes its own stderr) is gone.
// Not in cmd.Wait's keeping: a child waiting for a long run holds it.
func (z *Zygote) logStderr(r *os.File) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		z.r.log.Warn("fork server", "stderr", run.Clip(sc.Text(), run.MaxMessage))
	}
	// A line past the scanner's buffer: no writer may block on a full
	// pipe for want of a reader.
	_, _ = io.Copy(io.Discard, r)
}

// answers reads the server's answers on c, one per request in the order
// sent, until c ends: a request the server could not fork for, and every
// request unanswered when c ends, is lost.
func (z *Zygote) answers(c *net.UnixConn, pending *[]func()) {
	// A retired server's socket is nobody else's to close.
	defer c.Close()
	var b [1]byte
	for {
		n, err := c.Read(b[:])
		z.mu.Lock()
		if err != nil || n != 1 {
			lost := *pending
			*pending = nil
			z.mu.Unlock()
			for _, f := range lost {
				f()
			}
			return
		}
		var f func()
		if len(*pending) > 0 {
			f, *pending = (*pending)[0], (*pending)[1:]
		}
		z.mu.Unlock()
		if b[0] != '1' && f != nil {
			f()
		}
	}
}

// checkHostHome refuses a HOME (of env, the sandbox's) that holds a
// .local on the host: the server starts on the host, as root, and Python
// adds the user site-packages under HOME to its path at start-up, as it
// does in a sandbox from the run's own workspace. A run's HOME
// (/workspace) has no host counterpart; if one appeared, root would
// import from it.
func checkHostHome(env []string) error {
	for _, kv := range env {
		if home, ok := strings.CutPrefix(kv, "HOME="); ok {
			local := filepath.Join(home, ".local")
			if _, err := os.Lstat(local); err == nil {
				return fmt.Errorf("the fork server would import from the host's %s as root (its HOME is the sandbox's): refusing", local)
			}
		}
	}
	return nil
}

// fork sends the server one request, files (zygote.py's _enter says
// which), and returns once it is sent: the answer, that a child holds
// them, is not waited for (answers): kill is called if it never comes
// (the server could not fork, or died first), or if the server dies
// before the run is done. A server found gone when the request is sent
// is started again, once; one that took the request is not asked again,
// since a child of its may hold the files.
func (z *Zygote) fork(files []*os.File, kill func(), done <-chan struct{}) error {
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.closed {
		return errors.New("the fork server is closed")
	}
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f.Fd())
	}
	rights := unix.UnixRights(fds...)
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		if z.conn == nil {
			if err = z.start(); err != nil {
				return err
			}
		}
		if _, _, err = z.conn.WriteMsgUnix([]byte{1}, rights, nil); err == nil {
			*z.pending = append(*z.pending, kill)
			*z.runs = append(slices.DeleteFunc(*z.runs, zygoteRun.ended), zygoteRun{kill, done})
			if z.served++; z.served >= z.maxRuns {
				z.renew()
			}
			return nil
		}
		z.stop()
	}
	return fmt.Errorf("send to the fork server: %w", err)
}

// renew lets the server go and starts its successor; z.mu is held. A
// successor that fails to start is started by the next run.
func (z *Zygote) renew() {
	z.retire()
	if err := z.start(); err != nil {
		z.r.log.Warn("start the fork server", "err", err)
	}
}

// retire lets the server go without ending it; z.mu is held. The end of
// its socket's sending side is its EOF once it has read every request
// sent: it answers those (its answers goroutine reads them to the end),
// waits for its children, the runs' processes, reports each, and exits.
func (z *Zygote) retire() {
	if err := z.conn.CloseWrite(); err != nil {
		// It could not be told: end it as stop does.
		z.stop()
		return
	}
	z.conn, z.proc = nil, nil
}

// stop ends the server and waits for it; z.mu is held. Its runs end
// with it (orphaned).
func (z *Zygote) stop() {
	if z.conn == nil {
		return
	}
	z.conn.Close()
	_ = z.proc.Kill()
	<-z.exited
	z.conn, z.proc = nil, nil
}

// Close lets the server go and waits for it to exit: runs it forked go
// on to their end (each within its deadline) and are reported.
func (z *Zygote) Close() error {
	z.mu.Lock()
	z.closed = true
	exited := z.exited
	if z.conn != nil {
		z.retire()
	}
	z.mu.Unlock()
	if exited != nil {
		<-exited
	}
	return nil
}

// enterConfig is what the zygote's child reads: the run's ids, rlimits,
// working directory, seccomp filter and the warm runner's control.
type enterConfig struct {
	// Argv is what the run's process shows as its command line before
	// the entry file and the run's args: the interpreter's argv in a
	// sandbox started for the run.
	Argv    []string         `json:"argv"`
	UID     int              `json:"uid"`
	GID     int              `json:"gid"`
	Dir     string           `json:"dir"`
	Rlimits [][2]uint64      `json:"rlimits"`
	Seccomp string           `json:"seccomp,omitempty"`
	Control *json.RawMessage `json:"control"`
}
