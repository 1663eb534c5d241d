// Package cli is sandboxctl's command line: flag parsing and wiring onto the
// executor, nothing else.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	"github.com/spf13/cobra"
)

// Main runs sandboxctl with args and returns its exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) (code int) {
	// SIGINT or SIGTERM cancels the run (which kills it whole); sandboxctl
	// then exits 128+signal, as the program would have.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	var got atomic.Value
	go func() {
		select {
		case s := <-sigs:
			got.Store(s)
			cancel()
		case <-ctx.Done():
		}
	}()
	defer func() {
		if s, ok := got.Load().(syscall.Signal); ok {
			code = 128 + int(s)
		}
	}()
	root := &cobra.Command{
		Use:           "sandboxctl",
		Short:         "Run untrusted programs in a sandbox",
		SilenceUsage:  true,
		SilenceErrors: true,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Errorf("unknown command %q; see sandboxctl --help", args[0])}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usageError{fmt.Errorf("missing command; see sandboxctl --help")}
		},
	}
	root.AddCommand(runCommand(stdin, stdout, stderr, &code), runtimesCommand(stdout), doctorCommand(stdout, &code))
	// Flag and argument mistakes exit 2, the sandbox's own failures 125.
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	for _, c := range root.Commands() {
		if c.Args != nil {
			check := c.Args
			c.Args = func(cmd *cobra.Command, args []string) error {
				if err := check(cmd, args); err != nil {
					return usageError{err}
				}
				return nil
			}
		}
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(stderr, "sandboxctl:", err)
		var ue usageError
		if errors.As(err, &ue) {
			return 2
		}
		code = ExitSandboxError
	}
	return code
}

// usageError marks a command-line mistake (exit code 2).
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }
