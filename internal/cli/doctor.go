package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
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
			checks = append(checks, wasmCheck(""), wasmWorkerCheck(cmd.Context()))
			checks = append(checks, sandboxedRun(cmd)...)
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

// sandboxedRun proves the checks above by running a program in a sandbox,
// and reads from what it saw one check per guarantee of a run's quotas
// and of the host facts hidden from it (isolate.DoctorRunChecks).
func sandboxedRun(cmd *cobra.Command) []isolate.Check {
	c := isolate.Check{Name: "sandboxed run", Required: true}
	x, err := executor.New(executor.Options{Logger: slog.New(slog.DiscardHandler), CeilingOwner: ceilingOwner})
	if err != nil {
		c.Detail = err.Error()
		c.Fix = "fix the failed checks above"
		return []isolate.Check{c}
	}
	defer x.Close()
	spec := &run.Spec{Runtime: "sh", Files: []run.File{{Name: "doctor.sh", Content: []byte(isolate.DoctorScript)}}}
	res, err := run.Do(cmd.Context(), x, spec, run.Stream{})
	if err != nil {
		c.Detail = err.Error()
		return []isolate.Check{c}
	}
	c.OK = res.Status == run.StatusOK && !res.StdoutTruncated
	iso := res.Isolation
	c.Detail = fmt.Sprintf("status %s in %s: namespaces %s, cgroup %s, seccomp %v, no_new_privs %v, uid %d",
		res.Status, res.WallTime.Round(1e5), strings.Join(iso.Namespaces, ","), iso.Cgroup, iso.Seccomp, iso.NoNewPrivs, iso.UID)
	hostMountinfo, _ := os.ReadFile("/proc/self/mountinfo")
	return append([]isolate.Check{c}, isolate.DoctorRunChecks(string(res.Stdout), string(hostMountinfo))...)
}

// wasmWorkerCheck starts a real wasm worker and reports what the kernel
// says of it: it must run as an unprivileged uid with no capabilities,
// no_new_privs and a seccomp filter on every thread, in a memory cgroup of
// its own whose limit is the run's.
func wasmWorkerCheck(ctx context.Context) isolate.Check {
	c := isolate.Check{Name: "wasm workers"}
	const memory = 16 << 20
	st, err := wasm.ProbeWorker(ctx, memory)
	if err != nil {
		c.Detail = "could not start a worker: " + err.Error()
		c.Fix = "run doctor as root, as the daemon runs; without confined workers the wasm backend runs guests as the daemon's uid"
		return c
	}
	uid, _, _ := strings.Cut(st.Uid, "\t")
	c.OK = !strings.HasPrefix(st.Uid, "0\t") && !strings.Contains("\t"+st.Uid+"\t", "\t0\t") &&
		st.CapEff == "0000000000000000" && st.CapPrm == "0000000000000000" && st.NoNewPrivs == "1" && st.Seccomp == "2" &&
		st.Threads > 0 && st.ThreadsFiltered == st.Threads && st.InCgroup && st.MemoryLimit > 0 && st.MemoryLimit < 1<<30
	c.Detail = fmt.Sprintf("a worker runs as uid %s, CapEff %s, NoNewPrivs %s, Seccomp %s on %d of %d threads, in cgroup %s limited to %d MiB for a 16 MiB run",
		uid, st.CapEff, st.NoNewPrivs, st.Seccomp, st.ThreadsFiltered, st.Threads, st.Cgroup, st.MemoryLimit>>20)
	if !c.OK {
		c.Fix = "the worker is not confined as internal/wasm/confine_linux.go says: report it"
	}
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
