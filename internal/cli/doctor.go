package cli

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sandboxd/sandboxd/internal/executor"
	"github.com/sandboxd/sandboxd/internal/isolate"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/wasm"
)

func doctorCommand(stdout io.Writer, code *int) *cobra.Command {
	return &cobra.Command{
		Use:   "doctor",
		Short: "Check which of the sandbox's guarantees hold on this host",
		Long: `Check, line by line, the host features the sandbox stands on, and say
what to do about each that is missing, then whether the wasm backend's
interpreters are built. Ends with a real sandboxed run. Exits 1 when a
required check fails.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			checks := isolate.Doctor()
			checks = append(checks, wasmCheck(""), sandboxedRun(cmd))
			for _, c := range checks {
				mark := "ok  "
				switch {
				case !c.OK && c.Required:
					mark = "FAIL"
					*code = 1
				case !c.OK:
					mark = "warn"
				}
				fmt.Fprintf(stdout, "%s  %-18s %s\n", mark, c.Name, c.Detail)
				if c.Fix != "" {
					fmt.Fprintf(stdout, "      %-18s fix: %s\n", "", c.Fix)
				}
			}
			return nil
		},
	}
}

// sandboxedRun proves the checks above by running a program in a sandbox.
func sandboxedRun(cmd *cobra.Command) isolate.Check {
	c := isolate.Check{Name: "sandboxed run", Required: true}
	x, err := executor.New(executor.Options{Logger: slog.New(slog.DiscardHandler), CeilingOwner: ceilingOwner})
	if err != nil {
		c.Detail = err.Error()
		c.Fix = "fix the failed checks above"
		return c
	}
	defer x.Close()
	// The host's boot command line stands for every masked /proc file.
	script := "if [ -s /proc/cmdline ]; then echo 'the host /proc/cmdline is readable'; else echo ok; fi\n"
	spec := &run.Spec{Runtime: "sh", Files: []run.File{{Name: "doctor.sh", Content: []byte(script)}}}
	res, err := run.Do(cmd.Context(), x, spec, run.Stream{})
	if err != nil {
		c.Detail = err.Error()
		return c
	}
	c.OK = res.Status == run.StatusOK && string(res.Stdout) == "ok\n"
	iso := res.Isolation
	c.Detail = fmt.Sprintf("status %s in %s: namespaces %s, cgroup %s, seccomp %v, no_new_privs %v, uid %d, host /proc masked %v",
		res.Status, res.WallTime.Round(1e5), strings.Join(iso.Namespaces, ","), iso.Cgroup, iso.Seccomp, iso.NoNewPrivs, iso.UID, string(res.Stdout) == "ok\n")
	return c
}

// wasmCheck reports whether the wasm backend's interpreters are built in
// runtimes directory dir (see wasm.RuntimesDir), and how to build them.
// The wasm backend is optional: without it python and javascript run on
// the process backend only.
func wasmCheck(dir string) isolate.Check {
	dir = wasm.RuntimesDir(dir)
	c := isolate.Check{Name: "wasm backend"}
	var built, missing []string
	for _, in := range wasm.Interpreters {
		if err := wasm.Built(dir, in.Name); err != nil {
			missing = append(missing, in.Name)
		} else {
			built = append(built, in.Name)
		}
	}
	c.OK = len(missing) == 0
	switch {
	case c.OK:
		c.Detail = "interpreters built in " + dir + ": " + strings.Join(built, ", ")
	case len(built) == 0:
		c.Detail = "interpreters not built (" + strings.Join(missing, ", ") + " missing in " + dir + "): python and javascript run on the process backend only"
	default:
		c.Detail = strings.Join(built, ", ") + " built, " + strings.Join(missing, ", ") + " not (in " + dir + ")"
	}
	if !c.OK {
		c.Fix = "run `" + wasm.BuildCommand + "` from the source tree (" + wasm.RuntimesDirEnv + " picks another directory)"
	}
	return c
}
