package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/regkeeper/regkeeper/demo"
	"github.com/regkeeper/regkeeper/internal/output"
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

Then it runs the weekly cycle on it, as 'regkeeper cycle' does: inventory,
audit (base/centos banned), backup into DIR/backup, verify, gc (no grace
window: everything was just pushed), writes the HTML report to
DIR/report.html, and pulls every tag back to show that nothing live was lost.

With --serve it seeds and keeps serving until interrupted, without the
cycle, so that crane, regctl, docker or regkeeper itself can be pointed at it.`,
		Example: `  # seed the estate, run the weekly cycle on it, then clean up
  regkeeper demo

  # keep the backup and the report
  regkeeper demo --dir /tmp/regkeeper-demo

  # keep the registry up on a fixed port and explore it
  regkeeper demo --serve --addr 127.0.0.1:5000 --dir /tmp/regkeeper-demo
  crane catalog --insecure 127.0.0.1:5000
  regkeeper inventory --insecure 127.0.0.1:5000`,
		Args: positional(),
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
				return nil
			}
			fmt.Fprintf(out, "\nthe weekly cycle (regkeeper cycle %s --insecure --config %s --backup %s --grace 0 --ban base/centos):\n\n",
				env.Server.Host, env.Server.ConfigFile, filepath.Join(env.Dir, "backup"))
			res, err := env.RunCycle(ctx, g.reporter(cmd), g.logger(cmd))
			if res != nil && res.Result != nil {
				if werr := writeCycle(cmd, output.Table, res.Result); werr != nil && err == nil {
					err = werr
				}
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "\nafter gc, %d of %d tags pulled back, every blob verified", res.Pulled, res.Pulled+len(res.PullErrors))
			if len(res.PullErrors) > 0 {
				fmt.Fprintf(out, "; FAILED:\n  %s\n", strings.Join(res.PullErrors, "\n  "))
				return fmt.Errorf("%d tags no longer pull after gc", len(res.PullErrors))
			}
			fmt.Fprintln(out)
			if opts.Dir != "" {
				fmt.Fprintf(out, "backup in %s, report in %s\n", res.BackupDir, res.ReportFile)
			} else {
				fmt.Fprintln(out, "(run with --dir DIR to keep the registry, its backup and the HTML report)")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&opts.Dir, "dir", "", "directory for the registry's config and storage (default: a temporary directory, removed at exit)")
	cmd.Flags().StringVar(&opts.Addr, "addr", "", "address to listen on (default: a free port on 127.0.0.1)")
	cmd.Flags().BoolVar(&serve, "serve", false, "keep serving the registry until interrupted")
	return cmd
}
