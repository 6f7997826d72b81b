package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/regkeeper/regkeeper/backup"
	"github.com/regkeeper/regkeeper/internal/output"
)

func newVerifyCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "verify DIR",
		Short: "Re-hash a backup and check that every manifest's blobs are present",
		Long: `verify reads every blob of a backup made by regkeeper backup and checks that it
hashes to its name, then walks every image of index.json and checks that each
manifest, child, config and layer it references is present with its size.
Index children that the registry itself did not have (recorded by backup) and
non-distributable layers are not expected.

Each corrupt, missing or mis-sized blob is listed by digest with what
references it; the exit code is 1 if there is any. verify never modifies DIR:
run backup again to fetch missing blobs.`,
		Example: `  # check last night's backup
  regkeeper verify /backups/registry

  # in a script
  regkeeper verify /backups/registry -o json || alert "backup is damaged"`,
		Args: positional(argVerifyDir),
		RunE: func(cmd *cobra.Command, argv []string) error {
			log := g.logger(cmd)
			res, err := backup.Verify(cmd.Context(), argv[0], backup.VerifyOptions{Jobs: g.jobs, Progress: g.reporter(cmd), Logger: log})
			if err != nil {
				return err
			}
			if err := writeVerifyResult(cmd, g.format(), res); err != nil {
				return err
			}
			if !res.OK() {
				return fmt.Errorf("%d blobs are corrupt or missing: %w", len(res.Problems), errPartial)
			}
			return nil
		},
	}
	g.registerOutput(cmd)
	return cmd
}

func writeVerifyResult(cmd *cobra.Command, f output.Format, res *backup.VerifyResult) error {
	out := cmd.OutOrStdout()
	if f == output.JSON {
		return output.WriteJSON(out, res)
	}
	rows := output.Rows{Header: []string{"BLOB", "PROBLEM", "DETAIL"}}
	for _, p := range res.Problems {
		rows.Add(p.Blob, p.Problem, p.Detail)
	}
	if f == output.Table && len(res.Problems) == 0 {
		fmt.Fprintf(out, "ok: %d images, %d referrers, %d manifests, %d blobs (%s) verified\n",
			res.Images, res.Referrers, res.Manifests, res.Blobs, output.Bytes(res.Bytes))
		return nil
	}
	if err := output.Write(out, f, rows, res); err != nil {
		return err
	}
	if f == output.Table {
		fmt.Fprintf(out, "\n%d problems in %d blobs (%s) of %d images\n", len(res.Problems), res.Blobs, output.Bytes(res.Bytes), res.Images)
	}
	return nil
}
