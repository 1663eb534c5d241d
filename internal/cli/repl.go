package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/sandboxd/sandboxd/internal/client"
	"github.com/sandboxd/sandboxd/internal/executor"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/runtimes"
	"github.com/sandboxd/sandboxd/internal/session"
)

func replCommand(stdin io.Reader, stdout, stderr io.Writer, sig *signals, code *int) *cobra.Command {
	var (
		f       sessionSpecFlags
		sf      serverFlags
		saveDir string
		verbose bool
	)
	cmd := &cobra.Command{
		Use:   "repl [flags]",
		Short: "An interactive Python (or JavaScript) prompt in a sandbox",
		Long: `Start a session in a sandbox (Python; JavaScript on node with --runtime
javascript) and read cells from stdin as Python's own REPL does: ">>> "
for a new statement, "... " while one goes on (an open bracket or
triple-quoted string, a trailing backslash or colon, a block). A block
ends at a blank line, or at an unindented line that is not one of its
clauses (else, except, ...), which then starts the next cell.
Each cell's output streams live; the value of a trailing expression is
printed on stdout (its text/plain), a traceback on stderr, and images as
"[image/png 640x480, 12 KiB]" (or saved with --save-images DIR as
cell-N-K.png). Variables, imports and files persist from cell to cell.

Without --server the session runs here, in-process, and needs what
sandboxctl run needs (root, user namespaces, cgroups); with --server URL
it runs on that sandboxd (token: --token, else $SANDBOXD_TOKEN).

Prompts and the banner are written to stderr, and only when stdin is a
terminal: piped input gives stdout exactly the cells' output and values,
and stderr their errors, as "python3 - < script" would.

Ctrl-C while a cell runs interrupts it (KeyboardInterrupt, the session
goes on); at the prompt it drops the lines typed so far. Ctrl-D (end of
input), and in Python exit() or quit(), end the REPL and remove the
session. Exit code: 0 at the end of input, exit()'s code; when the
session dies (a limit killed the kernel) the code sandboxctl session exec
gives that cell (122 for the memory limit); 125 when the session cannot
be started or is gone.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			spec, err := f.spec()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			var b replBackend
			if sf.server != "" {
				b, err = startRemote(ctx, sf.client(), spec)
			} else {
				level := slog.LevelWarn
				if verbose {
					level = slog.LevelDebug
				}
				b, err = startLocal(ctx, spec, sig, slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})))
			}
			if err != nil {
				return err
			}
			view := newCellView(stdout, stderr, saveDir)
			defer func() {
				// The session goes even when sandboxctl was told to stop.
				ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
				defer cancel()
				if err := b.close(ctx); err != nil {
					fmt.Fprintln(view.stderr, "sandboxctl: remove the session:", err)
				}
			}()
			intr, release := sig.interrupts()
			defer release()
			r := &repl{b: b, view: view, prompts: isTerminal(stdin), intr: intr}
			if r.prompts {
				fmt.Fprintf(view.stderr, "%s\n", b.banner())
			}
			*code = r.run(ctx, stdin)
			return nil
		},
	}
	f.add(cmd, "end the session after this long without use (default: none here; the daemon's with --server)")
	fl := cmd.Flags()
	sf.add(fl, true)
	fl.StringVar(&saveDir, "save-images", "", "save the cells' images in `DIR` as cell-N-K.png")
	fl.BoolVar(&verbose, "verbose", false, "log what the sandbox does to stderr (without --server)")
	return cmd
}

// replBackend is where the REPL's session lives: here, or on a daemon.
type replBackend interface {
	exec(ctx context.Context, code string, live client.Live) (*run.CellResult, error)
	// interrupt interrupts the running cell (a KeyboardInterrupt in it).
	interrupt(ctx context.Context) error
	// gone reports whether an error of exec means the session takes no
	// more cells.
	gone(err error) bool
	banner() string
	// close ends the session and removes it.
	close(ctx context.Context) error
}

// remoteSession is a session on a daemon.
type remoteSession struct {
	c    *client.Client
	info *run.SessionInfo
}

func startRemote(ctx context.Context, c *client.Client, spec *run.SessionSpec) (*remoteSession, error) {
	info, err := c.CreateSession(ctx, spec)
	if err != nil {
		return nil, err
	}
	return &remoteSession{c: c, info: info}, nil
}

func (r *remoteSession) exec(ctx context.Context, code string, live client.Live) (*run.CellResult, error) {
	return r.c.Exec(ctx, r.info.ID, run.CellRequest{Code: code}, live)
}

func (r *remoteSession) interrupt(ctx context.Context) error {
	_, err := r.c.Interrupt(ctx, r.info.ID)
	return err
}

func (r *remoteSession) gone(err error) bool {
	var ce *client.Error
	return errors.As(err, &ce) && (ce.Status == http.StatusNotFound || ce.Status == http.StatusConflict)
}

func (r *remoteSession) banner() string {
	return banner(r.info.Runtime, r.info.Version, fmt.Sprintf("in session %s on %s", r.info.ID, r.c.Base))
}

// close deletes the session; one already gone (expired) is no error.
func (r *remoteSession) close(ctx context.Context) error {
	err := r.c.DeleteSession(ctx, r.info.ID)
	if ce := (*client.Error)(nil); errors.As(err, &ce) && ce.Status == http.StatusNotFound {
		return nil
	}
	return err
}

// localSession is a session in this process, on the local sandbox.
type localSession struct {
	x *executor.Executor
	m *session.Manager
	s *session.Session
}

// localOwner owns the local REPL's session.
const localOwner = "local"

// localIdle stands for "no idle timeout": the session lives as long as
// the REPL.
const localIdle = 100 * 365 * 24 * time.Hour

func startLocal(ctx context.Context, spec *run.SessionSpec, sig *signals, log *slog.Logger) (_ *localSession, err error) {
	x, err := executor.New(executor.Options{Logger: log, CeilingOwner: ceilingOwner})
	if err != nil {
		return nil, err
	}
	defaults, ceiling := x.Limits()
	m := session.NewManager(ctx, session.Config{
		Runner: x.Process(), RunnerErr: x.ProcessErr(), Runtimes: x.Runtimes(),
		Defaults: defaults, Ceiling: ceiling, CeilingOwner: ceilingOwner, MaxSessions: 1, MaxPerOwner: 1,
		IdleTimeout: localIdle, MaxIdleTimeout: localIdle, Replica: "local", Logger: log,
	})
	// The sandbox is in a process group of its own: a Ctrl-C at the
	// terminal reaches sandboxctl only, which interrupts the cell.
	s, err := m.Create(ctx, localOwner, spec)
	if err != nil {
		return nil, errors.Join(err, m.Close(), x.Close())
	}
	return &localSession{x: x, m: m, s: s}, nil
}

func (l *localSession) exec(ctx context.Context, code string, live client.Live) (*run.CellResult, error) {
	return l.s.Exec(ctx, run.CellRequest{Code: code}, run.CellStream{Stdout: live.Stdout, Stderr: live.Stderr, Display: live.Display})
}

func (l *localSession) interrupt(context.Context) error {
	_, err := l.s.Interrupt()
	return err
}

func (l *localSession) gone(err error) bool {
	return errors.Is(err, session.ErrDead) || errors.Is(err, session.ErrNotFound)
}

func (l *localSession) banner() string {
	info := l.s.Info()
	return banner(info.Runtime, info.Version, fmt.Sprintf("in a local sandbox (session %s)", info.ID))
}

// banner greets the REPL's user: the language, its version, where the
// session is, and how to end it, as the runtime's registry entry says.
func banner(runtime, version, where string) string {
	title, quit := runtime, ""
	if rt, err := runtimes.Default().Lookup(runtime); err == nil {
		title = rt.DisplayName()
		if rt.Kernel != nil {
			quit = rt.Kernel.Quit
		}
	}
	end := "Ctrl-D ends the session."
	if quit != "" {
		end = "Ctrl-D or " + quit + " ends the session."
	}
	return fmt.Sprintf("%s %s %s\n%s", title, version, where, end)
}

func (l *localSession) close(context.Context) error {
	err := l.m.Delete(localOwner, l.s.ID())
	if errors.Is(err, session.ErrNotFound) {
		err = nil
	}
	return errors.Join(err, l.m.Close(), l.x.Close())
}

// repl reads cells and runs them one after the other.
type repl struct {
	b    replBackend
	view *cellView
	// prompts: stdin is a terminal.
	prompts bool
	// intr receives the SIGINTs.
	intr <-chan struct{}
}

// run reads and runs cells until the end of input, an exit() or the
// session's death, and returns the exit code.
func (r *repl) run(ctx context.Context, in io.Reader) int {
	lines := make(chan string)
	done := make(chan struct{})
	defer close(done)
	go readLines(in, lines, done)
	var split cellSplitter
	for {
		if r.prompts {
			p := ">>> "
			if split.pending() {
				p = "... "
			}
			fmt.Fprint(r.view.stderr, p)
		}
		select {
		case <-ctx.Done():
			return 0 // Main exits 128+N
		case <-r.intr:
			split.reset()
			if r.prompts {
				fmt.Fprintln(r.view.stderr)
			}
			fmt.Fprintln(r.view.stderr, "KeyboardInterrupt")
		case l, ok := <-lines:
			var cells []string
			if ok {
				cells = split.line(l)
			} else {
				cells = split.flush()
			}
			for _, c := range cells {
				if code, end := r.cell(ctx, c); end {
					return code
				}
			}
			if !ok {
				if r.prompts {
					fmt.Fprintln(r.view.stderr)
				}
				return 0
			}
		}
	}
}

// readLines sends in's lines, without their line ends, until its end
// (then it closes lines) or until done is closed.
func readLines(in io.Reader, lines chan<- string, done <-chan struct{}) {
	br := bufio.NewReader(in)
	for {
		l, err := br.ReadString('\n')
		if l != "" || err == nil {
			l = strings.TrimSuffix(strings.TrimSuffix(l, "\n"), "\r")
			select {
			case lines <- l:
			case <-done:
				return
			}
		}
		if err != nil {
			close(lines)
			return
		}
	}
}

// cell runs one cell and shows it; end says the REPL is over, with code.
func (r *repl) cell(ctx context.Context, code string) (exit int, end bool) {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		interrupted atomic.Bool
		wg          sync.WaitGroup
		stop        = make(chan struct{})
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-r.intr:
		case <-stop:
			return
		}
		// A first Ctrl-C interrupts the cell as Python's prompt does: its
		// KeyboardInterrupt comes back with the result. A second one (or
		// a failed interrupt) ends the request, and the session then
		// interrupts the cell itself.
		if r.b.interrupt(ctx) == nil {
			select {
			case <-r.intr:
			case <-stop:
				return
			}
		}
		interrupted.Store(true)
		cancel()
	}()
	res, err := r.b.exec(cctx, code, r.view.live())
	close(stop)
	wg.Wait()
	switch {
	case ctx.Err() != nil:
		return 0, true // Main exits 128+N
	case err != nil && interrupted.Load() && !r.b.gone(err):
		// The request ended before its result: all there is to say.
		fmt.Fprintln(r.view.stderr, "KeyboardInterrupt")
		return 0, false
	case err != nil:
		fmt.Fprintln(r.view.stderr, "sandboxctl:", err)
		if r.b.gone(err) {
			return ExitSandboxError, true
		}
		return 0, false
	}
	if code, msg, ok := systemExit(res); ok {
		if msg != "" {
			fmt.Fprintln(r.view.stderr, msg)
		}
		return code, true
	}
	dead := res.State == run.SessionDead
	r.view.show(res, interrupted.Load() && !dead)
	if dead {
		return CellExitCode(res), true
	}
	return 0, false
}

// systemExit reports whether the cell called exit() (sys.exit, quit)
// and the exit code it asked for, as Python gives it: none is 0, an
// integer is itself, anything else is a message to print and 1.
func systemExit(res *run.CellResult) (code int, msg string, ok bool) {
	if res.Status != run.StatusError || res.Error == nil || res.Error.Name != "SystemExit" {
		return 0, "", false
	}
	switch v := res.Error.Value; v {
	case "", "None":
		return 0, "", true
	default:
		if n, err := strconv.Atoi(v); err == nil {
			return n & 0xff, "", true
		}
		return 1, v, true
	}
}
