// Package cli is sandboxctl's command line: flag parsing and wiring onto the
// executor, the session manager (the local REPL) and the daemon's client,
// and the REPL's reading of cells.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/spf13/cobra"
)

// Main runs sandboxctl with args and returns its exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) (code int) {
	// SIGINT or SIGTERM cancels the run (which kills it whole); sandboxctl
	// then exits 128+signal, as the program would have. The REPL takes
	// SIGINT for itself (interrupt a cell, clear a line).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sig := &signals{ch: make(chan os.Signal, 1)}
	signal.Notify(sig.ch, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig.ch)
	var got atomic.Value
	go func() {
		for {
			select {
			case s := <-sig.ch:
				if s == os.Interrupt && sig.interrupt() {
					continue
				}
				got.Store(s)
				cancel()
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	defer func() {
		if s, ok := got.Load().(syscall.Signal); ok {
			code = 128 + int(s)
		}
	}()
	root := newRoot(stdin, stdout, stderr, sig, &code)
	root.SetArgs(args)
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

// newRoot is sandboxctl's command tree; commands set *code.
func newRoot(stdin io.Reader, stdout, stderr io.Writer, sig *signals, code *int) *cobra.Command {
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
	root.AddCommand(runCommand(stdin, stdout, stderr, code), runtimesCommand(stdout), doctorCommand(stdout, code),
		sessionCommand(stdin, stdout, stderr, code), replCommand(stdin, stdout, stderr, sig, code))
	// Flag and argument mistakes exit 2, the sandbox's own failures 125.
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	var wrapArgs func(*cobra.Command)
	wrapArgs = func(parent *cobra.Command) {
		for _, c := range parent.Commands() {
			wrapArgs(c)
			if c.Args == nil {
				continue
			}
			check := c.Args
			c.Args = func(cmd *cobra.Command, args []string) error {
				if err := check(cmd, args); err != nil {
					return usageError{err}
				}
				return nil
			}
		}
	}
	wrapArgs(root)
	root.SetOut(stdout)
	root.SetErr(stderr)
	return root
}

// signals routes sandboxctl's SIGINT: to the command that takes it
// (interrupts), else to Main, which cancels the command.
type signals struct {
	ch chan os.Signal
	mu sync.Mutex
	// intr is the taker's channel, nil when none.
	intr chan struct{}
}

// interrupts takes SIGINT until release is called: each one is a receive
// on the channel (one pending at most; more are dropped).
func (s *signals) interrupts() (_ <-chan struct{}, release func()) {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	s.intr = ch
	s.mu.Unlock()
	return ch, func() {
		s.mu.Lock()
		if s.intr == ch {
			s.intr = nil
		}
		s.mu.Unlock()
	}
}

// interrupt hands a SIGINT to its taker and reports whether there is one.
func (s *signals) interrupt() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.intr == nil {
		return false
	}
	select {
	case s.intr <- struct{}{}:
	default:
	}
	return true
}

// usageError marks a command-line mistake (exit code 2).
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }
