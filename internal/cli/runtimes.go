package cli

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/sandboxd/sandboxd/internal/executor"
)

func runtimesCommand(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "runtimes",
		Short: "List the runtimes, their versions on this host and the backends that can run them here",
		Long: `List the runtimes: name, version on this host, aliases, the file
extensions that pick them, and the backends that can run them here: process
where that backend works (root, namespaces, cgroups; see sandboxctl doctor)
and the runtime is installed, wasm where its WASI interpreter is built
(scripts/build-wasm-runtimes.sh). "-" when none can.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			x, err := executor.New(executor.Options{Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				return err
			}
			defer x.Close()
			g := x.Runtimes()
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tVERSION\tALIASES\tEXTENSIONS\tBACKENDS")
			for _, rt := range g.All() {
				v, err := g.Version(cmd.Context(), rt)
				if err != nil {
					v = "not installed"
				}
				backends := "-"
				if bs := x.Backends(rt); len(bs) > 0 {
					var names []string
					for _, b := range bs {
						names = append(names, string(b))
					}
					backends = strings.Join(names, ",")
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", rt.Name, v, strings.Join(rt.Aliases, ","), strings.Join(rt.Extensions, ","), backends)
			}
			return tw.Flush()
		},
	}
}
