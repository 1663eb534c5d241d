package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/sandboxd/sandboxd/internal/client"
	"github.com/sandboxd/sandboxd/internal/executor"
	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
)

type runFlags struct {
	l       limits.Limits
	runtime string
	backend string
	env     []string
	files   []string
	json    bool
	outDir  string
	verbose bool
	server  string
	token   string
}

func runCommand(stdin io.Reader, stdout, stderr io.Writer, code *int) *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run [flags] FILE [ARGS...]",
		Short: "Run FILE in a sandbox, streaming its output; exit with its exit code",
		Long: `Run FILE in a fresh sandbox and pass ARGS to it. The runtime is picked by
FILE's extension unless --runtime names one. The program's stdout and stderr
stream live to sandboxctl's; stdin is passed through.

Exit code: the program's own; 128+N when killed by signal N; 124 when the
wall-clock limit stopped it, 123 the CPU-time limit, 122 the memory limit,
121 the output limit; 125 when the sandbox could not run it; 2 for a
command-line mistake. SIGINT or SIGTERM to sandboxctl kills the run and
exits 128+N.

Limits not given take the defaults shown below; with --server, the
daemon's defaults (these, unless it sets others).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := runFile(cmd, &f, args, stdin, stdout, stderr)
			if err != nil {
				return err
			}
			*code = ExitCode(res)
			return nil
		},
	}
	// Flags after FILE belong to the program, not to sandboxctl.
	cmd.Flags().SetInterspersed(false)
	fl := cmd.Flags()
	addLimitFlags(fl, &f.l, false)
	fl.StringVar(&f.runtime, "runtime", "", "the runtime to use, by `NAME` or alias (default: by FILE's extension; sandboxctl runtimes lists them)")
	fl.StringVar(&f.backend, "backend", "", "the `BACKEND` to run on: process, wasm, or empty for auto (process where it works, else wasm)")
	fl.StringArrayVar(&f.env, "env", nil, "add `KEY=VALUE` to the program's environment (repeatable)")
	fl.StringArrayVar(&f.files, "file", nil, "copy `PATH` into the workspace next to FILE (repeatable)")
	fl.BoolVar(&f.json, "json", false, "print the full result as JSON instead of streaming the output")
	fl.StringVar(&f.outDir, "out", "", "write the files the program produced into `DIR`")
	fl.BoolVar(&f.verbose, "verbose", false, "log what the sandbox does to stderr")
	fl.StringVar(&f.server, "server", "", "send the run to the sandboxd at `URL` instead of running it here")
	fl.StringVar(&f.token, "token", "", "bearer `TOKEN` for --server (default $SANDBOXD_TOKEN)")
	return cmd
}

func runFile(cmd *cobra.Command, f *runFlags, args []string, stdin io.Reader, stdout, stderr io.Writer) (*run.Result, error) {
	spec := &run.Spec{Runtime: f.runtime, Args: args[1:], Limits: f.l, Backend: run.Backend(f.backend)}
	entry, err := readFile(args[0])
	if err != nil {
		return nil, usageError{err}
	}
	spec.Files = append(spec.Files, entry)
	for _, p := range f.files {
		extra, err := readFile(p)
		if err != nil {
			return nil, usageError{err}
		}
		spec.Files = append(spec.Files, extra)
	}
	if spec.Env, err = parseEnv(f.env); err != nil {
		return nil, err
	}
	logLevel := slog.LevelWarn
	if f.verbose {
		logLevel = slog.LevelDebug
	}
	stream := run.Stream{Stdin: stdin}
	if !f.json {
		stream.Stdout, stream.Stderr = stdout, stderr
	}
	var res *run.Result
	if f.server != "" {
		// The API takes stdin up front: a terminal is not read.
		if isTerminal(stdin) {
			stream.Stdin = nil
		}
		token := f.token
		if token == "" {
			token = os.Getenv("SANDBOXD_TOKEN")
		}
		c := &client.Client{Base: f.server, Token: token}
		res, err = c.Run(cmd.Context(), spec, stream)
	} else {
		var x *executor.Executor
		x, err = executor.New(executor.Options{
			Logger:       slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: logLevel})),
			Versions:     f.json,
			CeilingOwner: ceilingOwner,
		})
		if err != nil {
			return nil, err
		}
		defer x.Close()
		res, err = run.Do(cmd.Context(), x, spec, stream)
	}
	if res == nil {
		return nil, err
	}
	if f.outDir != "" {
		if werr := writeFiles(f.outDir, res.Files); werr != nil {
			fmt.Fprintln(stderr, "sandboxctl: writing produced files:", werr)
		}
	}
	if f.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return nil, err
		}
	} else if res.Status.LimitHit() || res.Status == run.StatusInternalError || res.Status == run.StatusCanceled || res.Compile != nil && res.Compile.Status != run.StatusOK {
		fmt.Fprintln(stderr, "sandboxctl:", res.Reason)
	}
	return res, nil
}

// isTerminal reports whether r is a terminal (a character device).
func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// readFile reads a local file into a run.File named by its base name.
func readFile(p string) (run.File, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return run.File{}, err
	}
	st, err := os.Stat(p)
	if err != nil {
		return run.File{}, err
	}
	return run.File{Name: filepath.Base(p), Content: b, Mode: uint32(st.Mode().Perm())}, nil
}

// writeFiles writes produced files under dir. Their names come from the
// sandbox, so they go through an os.Root: none can land outside dir.
func writeFiles(dir string, files []run.OutputFile) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	for _, f := range files {
		if f.Content == nil {
			continue
		}
		if d := filepath.Dir(f.Name); d != "." {
			if err := root.MkdirAll(d, 0o755); err != nil {
				return err
			}
		}
		if err := root.WriteFile(f.Name, f.Content, os.FileMode(f.Mode&0o755)|0o600); err != nil {
			return err
		}
	}
	return nil
}
