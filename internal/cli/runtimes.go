package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/sandboxd/sandboxd/internal/runtimes"
)

func runtimesCommand(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "runtimes",
		Short: "List the runtimes, their versions on this host and their backends",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			g := runtimes.Default()
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tVERSION\tALIASES\tEXTENSIONS\tBACKENDS")
			for _, rt := range g.All() {
				v, err := g.Version(cmd.Context(), rt)
				if err != nil {
					v = "not installed"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", rt.Name, v, strings.Join(rt.Aliases, ","), strings.Join(rt.Extensions, ","), strings.Join(rt.Backends(), ","))
			}
			return tw.Flush()
		},
	}
}
