package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/regkeeper/regkeeper/internal/demo"
)

func newDemoCmd(g *globalOptions) *cobra.Command {
	var opts demo.Options
	var serve bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run regkeeper on an embedded registry seeded with a sample estate",
		Long: `demo starts a real distribution registry in-process on 127.0.0.1, with
filesystem storage in a temporary directory (or --dir), and seeds it with a
small but realistic estate: bases rebuilt under the same tag, applications on
old, current and banned bases, a multi-arch index, signatures, an SBOM
referrer, an index-only mirror, a FROM-scratch image and a reproducible build.

With --serve it keeps serving until interrupted, so that crane, regctl,
docker or regkeeper itself can be pointed at it.`,
		Example: `  # seed and print the estate, then clean up
  regkeeper demo

  # keep the registry up on a fixed port and explore it
  regkeeper demo --serve --addr 127.0.0.1:5000 --dir /tmp/regkeeper-demo
  crane catalog --insecure 127.0.0.1:5000
  regkeeper inventory --insecure 127.0.0.1:5000`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			env, err := demo.Start(ctx, opts)
			if err != nil {
				return err
			}
			defer env.Close()
			out := cmd.OutOrStdout()
			if err := env.WriteSeeded(out); err != nil {
				return err
			}
			if serve {
				fmt.Fprintf(out, "\nserving on http://%s until interrupted (Ctrl-C)\n", env.Server.Host)
				<-ctx.Done()
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&opts.Dir, "dir", "", "directory for the registry's config and storage (default: a temporary directory, removed at exit)")
	cmd.Flags().StringVar(&opts.Addr, "addr", "", "address to listen on (default: a free port on 127.0.0.1)")
	cmd.Flags().BoolVar(&serve, "serve", false, "keep serving the registry until interrupted")
	return cmd
}
