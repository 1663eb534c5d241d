package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sandboxd/sandboxd/internal/client"
	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/runtimes"
	"github.com/sandboxd/sandboxd/internal/wire"
)

// sessionCommand is `sandboxctl session`: sessions on a daemon, from the
// shell, one command per request.
func sessionCommand(stdin io.Reader, stdout, stderr io.Writer, code *int) *cobra.Command {
	var sf serverFlags
	cmd := &cobra.Command{
		Use:   "session",
		Short: "Keep a session (" + kernels() + ") on a sandboxd and run cells in it",
		Long: `A session is a live interpreter (` + kernels() + `) in a
sandbox on a sandboxd: its variables, imports and files persist from cell
to cell, as in a notebook, until it is removed or has been idle for its
idle timeout.

  id=$(sandboxctl session new --memory 512MiB --file data.csv)
  sandboxctl session exec $id 'import pandas as pd; df = pd.read_csv("data.csv")'
  sandboxctl session exec $id 'df.describe()'
  sandboxctl session cp $id:out.png .
  sandboxctl session rm $id

The daemon is --server, else $SANDBOXD_SERVER, else ` + defaultServer + `; the
token --token, else $SANDBOXD_TOKEN. Sessions are per token. For an
interactive prompt, see sandboxctl repl.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return usageError{errors.New("missing session command; see sandboxctl session --help")}
		},
	}
	sf.add(cmd.PersistentFlags(), false)
	cmd.AddCommand(
		sessionNewCommand(&sf, stdout),
		sessionExecCommand(&sf, stdin, stdout, stderr, code),
		sessionCpCommand(&sf, stdin, stdout),
		sessionLsCommand(&sf, stdout),
		sessionInfoCommand(&sf, stdout),
		sessionFilesCommand(&sf, stdout, stderr),
		sessionRmCommand(&sf, stderr, code),
	)
	return cmd
}

// printJSON writes v indented, as --json does everywhere.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// sessionSpecFlags are the flags that describe a new session (session new,
// repl).
type sessionSpecFlags struct {
	l       limits.Limits
	runtime string
	idle    limits.Duration
	cpu     limits.Duration
	env     []string
	files   []string
}

func (f *sessionSpecFlags) add(cmd *cobra.Command, idleHelp string) {
	fl := cmd.Flags()
	addLimitFlags(fl, &f.l, true)
	fl.StringVar(&f.runtime, "runtime", "python", "the session kernel's runtime, by `NAME`: "+kernels())
	fl.Var(&f.idle, "idle", idleHelp)
	showDefault(fl, "idle", "")
	fl.Var(&f.cpu, "cpu-budget", "CPU time the session may use in its whole life, background processes included; past it the session dies")
	showDefault(fl, "cpu-budget", "10m, or the daemon's --session-cpu")
	fl.StringArrayVar(&f.env, "env", nil, "add `KEY=VALUE` to the kernel's environment (repeatable)")
	fl.StringArrayVar(&f.files, "file", nil, "copy `LOCAL[:REMOTE]` into the workspace: file LOCAL, named REMOTE there if given (repeatable)")
}

// spec builds the session's spec, reading the --file files.
func (f *sessionSpecFlags) spec() (*run.SessionSpec, error) {
	spec := &run.SessionSpec{Runtime: f.runtime, Limits: f.l, IdleTimeout: f.idle, CPUBudget: f.cpu}
	env, err := parseEnv(f.env)
	if err != nil {
		return nil, err
	}
	spec.Env = env
	for _, arg := range f.files {
		local, remote := arg, ""
		if _, err := os.Stat(arg); err != nil {
			// Not a file by its whole name: LOCAL:REMOTE.
			if l, r, ok := strings.Cut(arg, ":"); ok {
				local, remote = l, r
			}
		}
		file, err := readFile(local)
		if err != nil {
			return nil, usageError{fmt.Errorf("--file %s: %w", arg, err)}
		}
		if remote != "" {
			file.Name = remote
		}
		spec.Files = append(spec.Files, file)
	}
	return spec, nil
}

// parseEnv parses --env KEY=VALUE flags.
func parseEnv(kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	env := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, usageError{fmt.Errorf("--env %q: want KEY=VALUE", kv)}
		}
		env[k] = v
	}
	return env, nil
}

func sessionNewCommand(sf *serverFlags, stdout io.Writer) *cobra.Command {
	var (
		f      sessionSpecFlags
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "new [flags]",
		Short: "Start a session and print its id",
		Long: `Start a session on the sandboxd and print its id, for the other session
commands. The limits are the session's: --timeout, --cpu-time and --output
apply to each cell, the others to the session as a whole. --file copies
files into the workspace before the kernel starts (LOCAL, or LOCAL:REMOTE
to give it another name in the workspace). --json prints the session's
description instead of its id. Limits not given take the daemon's
defaults: those shown below, unless it sets others.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			spec, err := f.spec()
			if err != nil {
				return err
			}
			info, err := sf.client().CreateSession(cmd.Context(), spec)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(stdout, info)
			}
			_, err = fmt.Fprintln(stdout, info.ID)
			return err
		},
	}
	f.add(cmd, "end the session after this long without use (default: the daemon's --session-idle)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the session's description as JSON")
	return cmd
}

func sessionExecCommand(sf *serverFlags, stdin io.Reader, stdout, stderr io.Writer, code *int) *cobra.Command {
	var (
		file    string
		timeout limits.Duration
		saveDir string
		asJSON  bool
	)
	cmd := &cobra.Command{
		Use:   "exec [flags] ID [CODE | -f FILE | -]",
		Short: "Run a cell in a session, as a REPL would",
		Long: `Run CODE (or FILE's, or stdin's with -) as one cell of session ID. Its
stdout and stderr stream live to sandboxctl's; then the value of its
trailing expression is printed on stdout as the language's REPL prints it
(its text/plain), and the traceback of an exception on stderr. Images it
displays (figures) are summarized as "[image/png 640x480, 12 KiB]", or
saved as DIR/cell-N-K.png with --save-images DIR (the K-th image of cell
N). --json prints the cell's whole result instead, as JSON.

Exit code: 0 when the cell ran to its end; 1 when it raised an exception;
124 when its wall-clock limit interrupted it, 123 its CPU-time limit, 121
its output limit (the session goes on after these), 122 when the memory
limit killed the kernel; 125 when the cell could not run (the session is
dead or gone, a daemon error) or the kernel itself ended; 2 for a
command-line mistake. SIGINT or SIGTERM to sandboxctl ends the request,
which interrupts the cell, and exits 128+N.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			src, err := cellSource(args[1:], file, stdin)
			if err != nil {
				return err
			}
			view := newCellView(stdout, stderr, saveDir)
			live := view.live()
			if asJSON {
				// The output is in the result.
				live = client.Live{}
			}
			res, err := sf.client().Exec(cmd.Context(), args[0], run.CellRequest{Code: src, Timeout: timeout}, live)
			if err != nil {
				return err
			}
			if asJSON {
				if err := printJSON(stdout, res); err != nil {
					return err
				}
			} else {
				view.show(res, false)
			}
			*code = CellExitCode(res)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&file, "file", "f", "", "run `FILE`'s code")
	fl.Var(&timeout, "timeout", "the cell's wall-clock limit (default: the session's)")
	showDefault(fl, "timeout", "")
	fl.StringVar(&saveDir, "save-images", "", "save the cell's images in `DIR` as cell-N-K.png")
	fl.BoolVar(&asJSON, "json", false, "print the cell's result as JSON instead of its output")
	return cmd
}

// cellSource is the cell's code: CODE, -f FILE, or stdin ("-", or nothing
// when stdin is not a terminal).
func cellSource(args []string, file string, stdin io.Reader) (string, error) {
	switch {
	case file != "" && len(args) > 0:
		return "", usageError{errors.New("give CODE or -f FILE, not both")}
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", usageError{err}
		}
		return string(b), nil
	case len(args) > 0 && args[0] != "-":
		return args[0], nil
	case len(args) == 0 && isTerminal(stdin):
		return "", usageError{errors.New("missing code: give CODE, -f FILE, or - to read stdin")}
	}
	b, err := io.ReadAll(stdin)
	if err != nil {
		return "", fmt.Errorf("read stdin: %w", err)
	}
	return string(b), nil
}

// remoteArg splits ID:PATH; ok is false for a local path. A local path
// with a colon before its first slash is written ./a:b.
func remoteArg(arg string) (id, file string, ok bool) {
	id, file, ok = strings.Cut(arg, ":")
	if !ok || id == "" || strings.Contains(id, "/") || arg == "-" {
		return "", "", false
	}
	return id, file, true
}

func sessionCpCommand(sf *serverFlags, stdin io.Reader, stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "cp SRC DST",
		Short: "Copy a file into or out of a session's workspace",
		Long: `Copy a file between here and a session's workspace:

  sandboxctl session cp LOCAL ID:PATH    upload (LOCAL - is stdin)
  sandboxctl session cp ID:PATH LOCAL    download (LOCAL - is stdout)

PATH is relative to the workspace, the kernel's working directory; its
directories are made as needed. A PATH that is empty or ends in / takes
LOCAL's name; a LOCAL that is a directory takes PATH's. Files stream: their
size is bounded by the session's workspace, not by memory. A local path
with a colon is written ./a:b.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			srcID, srcPath, srcRemote := remoteArg(args[0])
			dstID, dstPath, dstRemote := remoteArg(args[1])
			c := sf.client()
			switch {
			case srcRemote == dstRemote:
				return usageError{errors.New("one of SRC and DST must be ID:PATH, the other a local path")}
			case dstRemote:
				local := args[0]
				if dstPath == "" || strings.HasSuffix(dstPath, "/") {
					if local == "-" {
						return usageError{errors.New("copying stdin: name the file in ID:PATH")}
					}
					dstPath += filepath.Base(local)
				}
				r := stdin
				if local != "-" {
					f, err := os.Open(local)
					if err != nil {
						return usageError{err}
					}
					defer f.Close()
					if st, err := f.Stat(); err == nil && st.IsDir() {
						return usageError{fmt.Errorf("%s is a directory: copy its files one by one", local)}
					}
					r = f
				}
				_, err := c.PutFile(cmd.Context(), dstID, dstPath, r)
				return err
			default:
				local := args[1]
				if local == "-" {
					_, err := c.GetFile(cmd.Context(), srcID, srcPath, stdout)
					return err
				}
				if st, err := os.Stat(local); err == nil && st.IsDir() {
					local = filepath.Join(local, path.Base(srcPath))
				}
				return download(cmd.Context(), c, srcID, srcPath, local)
			}
		},
	}
}

// download writes a session's file to local through a temporary file
// next to it, so a failed copy leaves no partial file.
func download(ctx context.Context, c *client.Client, id, remote, local string) error {
	tmp, err := os.CreateTemp(filepath.Dir(local), ".sandboxctl-cp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := c.GetFile(ctx, id, remote, tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), local)
}

func sessionLsCommand(sf *serverFlags, stdout io.Writer) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List your sessions",
		Long: `List the sessions of your token on the sandboxd, oldest first: id,
runtime, state (idle, busy, or dead), cells run, age, time since last use
and time left before the idle timeout. --json prints them as JSON.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			list, err := sf.client().ListSessions(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				if list == nil {
					list = []run.SessionInfo{}
				}
				return printJSON(stdout, wire.SessionList{Sessions: list})
			}
			now := time.Now()
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tRUNTIME\tSTATE\tCELLS\tAGE\tIDLE\tEXPIRES IN")
			for _, s := range list {
				expires := "-"
				if s.State != run.SessionDead {
					expires = age(s.ExpiresAt, now, true)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", s.ID, strings.TrimSpace(s.Runtime+" "+s.Version), s.State, s.Cells,
					age(s.Created, now, false), age(s.LastUsed, now, false), expires)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the sessions as JSON")
	return cmd
}

// age is how long ago t was (or, with future, how long until it is),
// rounded to the second.
func age(t, now time.Time, future bool) string {
	d := now.Sub(t)
	if future {
		d = -d
	}
	if t.IsZero() || d < 0 {
		return "-"
	}
	return d.Round(time.Second).String()
}

func sessionInfoCommand(sf *serverFlags, stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "info ID",
		Short: "Describe a session, as JSON",
		Long: `Print session ID's description as JSON: its state (and why a dead session
died), its cells, its times and its limits.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			info, err := sf.client().GetSession(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printJSON(stdout, info)
		},
	}
}

func sessionFilesCommand(sf *serverFlags, stdout, stderr io.Writer) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "files ID [DIR]",
		Short: "List the files of a session's workspace",
		Long: `List the tree under directory DIR of session ID's workspace (the whole
workspace without DIR), a directory right before its entries: mode, size,
modification time and path in the workspace, directories with a trailing
/. A listing the daemon cut short says so on stderr. --json prints the
listing as JSON.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := ""
			if len(args) == 2 {
				dir = args[1]
			}
			list, err := sf.client().ListFiles(cmd.Context(), args[0], dir)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(stdout, list)
			}
			width := 1
			for _, f := range list.Files {
				width = max(width, len(strconv.FormatInt(f.Size, 10)))
			}
			for _, f := range list.Files {
				mode := os.FileMode(f.Mode).Perm()
				name := f.Name
				switch f.Type {
				case "dir":
					mode |= os.ModeDir
					name += "/"
				case "symlink":
					mode |= os.ModeSymlink
				case "other":
					mode |= os.ModeIrregular
				}
				if _, err := fmt.Fprintf(stdout, "%s  %*d  %s  %s\n", mode, width, f.Size, f.ModTime.Local().Format("2006-01-02 15:04"), name); err != nil {
					return err
				}
			}
			if list.Truncated {
				fmt.Fprintln(stderr, "sandboxctl: the listing is truncated")
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the listing as JSON")
	return cmd
}

func sessionRmCommand(sf *serverFlags, stderr io.Writer, code *int) *cobra.Command {
	return &cobra.Command{
		Use:   "rm ID [ID...]",
		Short: "End sessions and remove their files",
		Long: `End each session ID: its kernel is killed and its workspace removed. Exits
125 if any could not be removed (each is named on stderr), after trying
all.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := sf.client()
			for _, id := range args {
				if err := c.DeleteSession(cmd.Context(), id); err != nil {
					fmt.Fprintf(stderr, "sandboxctl: rm %s: %v\n", id, err)
					*code = ExitSandboxError
				}
			}
			return nil
		},
	}
}

// kernels lists the runtimes a session can run, from the registry.
func kernels() string {
	return strings.Join(runtimes.Default().Names(func(rt *runtimes.Runtime) bool { return rt.Kernel != nil }), ", ")
}
