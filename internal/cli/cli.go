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
	"syscall"

	"github.com/spf13/cobra"
)

// Main runs sandboxctl with args and returns its exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code := 0
	root := &cobra.Command{
		Use:           "sandboxctl",
		Short:         "Run untrusted programs in a sandbox",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(runCommand(stdin, stdout, stderr, &code), runtimesCommand(stdout), doctorCommand(stdout, &code))
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(stderr, "sandboxctl:", err)
		var ue usageError
		if errors.As(err, &ue) {
			return 2
		}
		return ExitSandboxError
	}
	return code
}

// usageError marks a command-line mistake (exit code 2).
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }
