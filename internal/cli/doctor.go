package cli

import (
	"io"

	"github.com/spf13/cobra"
)

func doctorCommand(stdout io.Writer, code *int) *cobra.Command {
	return &cobra.Command{
		Use:   "doctor",
		Short: "Check which of the sandbox's guarantees hold on this host",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return nil
		},
	}
}
