package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/regkeeper/regkeeper/backup"
	"github.com/regkeeper/regkeeper/internal/output"
)

func newVerifyCmd(g *globalOptions) *cobra.Command {
	var repair string
	var tf targetFlag
	cmd := &cobra.Command{
		Use:   "verify DIR [--repair REGISTRY]",
		Short: "Re-hash a backup and check that every manifest's blobs are present",
		Long: `verify reads every blob of a backup made by regkeeper backup and checks that it
hashes to its name, then walks every image of index.json and checks that each
manifest, child, config and layer it references is present with its size.
Index children that the registry itself did not have (recorded by backup) and
non-distributable layers are not expected.

The backup's snapshots (one per backup run) say whether it is complete: every
tag and referrer of every snapshot is checked as above, and when the last
run did not finish (interrupted, failed, killed) verify says so, names the
latest complete snapshot, and exits 1. A backup with no snapshot (made before
regkeeper recorded its runs, or another tool's layout) is checked by what
index.json holds and said to be of unknown completeness.

Each corrupt, missing or mis-sized blob is listed by digest with what
references it and the images it breaks; the exit code is 1 if there is any.
verify never modifies DIR, except with --repair REGISTRY: then every bad or
missing blob is fetched again from REGISTRY (from a repository of an image
that needs it), checked, and put in place, and the backup is verified again.

DIR may be an s3:// URL, or left out with --target-config FILE (as in
regkeeper backup): the backup is read where it is.`,
		Example: `  # check last night's backup
  regkeeper verify /backups/registry

  # in a script
  regkeeper verify /backups/registry -o json || alert "backup is damaged"

  # fetch what is damaged or missing again from the registry
  regkeeper verify /backups/registry --repair registry.example.com

  # a backup on S3
  regkeeper verify 's3://backups/registry?region=eu-west-1'`,
		Args: tf.args(0, argVerifyDir),
		RunE: func(cmd *cobra.Command, argv []string) error {
			log := g.logger(cmd)
			l, _, err := tf.open(cmd, argv, 0)
			if err != nil {
				return err
			}
			res, err := backup.VerifyLayout(cmd.Context(), l, backup.VerifyOptions{Jobs: g.jobs, Progress: g.reporter(cmd), Logger: log,
				Repair: repair, Client: g.client(log)})
			if err != nil {
				return err
			}
			if err := writeVerifyResult(cmd, g.format(), res); err != nil {
				return err
			}
			if res.Completeness == backup.CompletenessUnknown && g.format() != output.Table {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning: "+unknownCompleteness)
			}
			switch {
			case res.BadBlobs > 0:
				return fmt.Errorf("%s corrupt or missing: %w", countNoun(res.BadBlobs, "blob is", "blobs are"), errPartial)
			case !res.OK():
				return fmt.Errorf("the last backup run did not finish: %w", errPartial)
			}
			return nil
		},
	}
	tf.register(cmd)
	cmd.Flags().StringVar(&repair, "repair", "", "fetch every bad or missing blob again from this registry")
	g.registerOutput(cmd)
	return cmd
}

const unknownCompleteness = "this backup has no snapshot (made before regkeeper recorded its runs, or by another tool): its blobs are checked, but nothing says it holds every image the registry had; the next backup run records one"

func writeVerifyResult(cmd *cobra.Command, f output.Format, res *backup.VerifyResult) error {
	out := cmd.OutOrStdout()
	if f == output.JSON {
		return output.WriteJSON(out, res)
	}
	rows := output.Rows{Header: []string{"BLOB", "PROBLEM", "IMAGES", "DETAIL"}}
	for _, p := range res.Problems {
		rows.Add(p.Blob, p.Problem, strings.Join(p.Images, " "), p.Detail)
	}
	if f != output.Table {
		return output.Write(out, f, rows, res)
	}
	if len(res.Repaired) > 0 {
		fmt.Fprintf(out, "repaired: fetched %s again from the registry\n", countNoun(len(res.Repaired), "blob", "blobs"))
	}
	snapshot := func() {
		switch {
		case res.Completeness == backup.CompletenessUnknown:
			fmt.Fprintln(out, "completeness unknown: "+unknownCompleteness)
		case res.Snapshot != nil:
			fmt.Fprintf(out, "latest complete snapshot: %s (%s, %s)\n", res.Snapshot.ID, res.Snapshot.Time.Format(time.RFC3339), countNoun(res.Snapshot.Images, "image", "images"))
		}
	}
	if len(res.Problems) == 0 {
		fmt.Fprintf(out, "ok: %s, %s, %s, %s (%s) verified\n",
			countNoun(res.Images, "image", "images"), countNoun(res.Referrers, "referrer", "referrers"),
			countNoun(res.Manifests, "manifest", "manifests"), countNoun(res.Blobs, "blob", "blobs"), output.Bytes(res.Bytes))
		snapshot()
		return nil
	}
	if err := output.Write(out, f, rows, res); err != nil {
		return err
	}
	fmt.Fprintln(out)
	if res.BadBlobs > 0 {
		fmt.Fprintf(out, "%s corrupt or missing, of %s (%s) in %s\n", countNoun(res.BadBlobs, "blob", "blobs"),
			countNoun(res.Blobs, "blob", "blobs"), output.Bytes(res.Bytes), countNoun(res.Images, "image", "images"))
	} else {
		fmt.Fprintf(out, "the last backup run did not finish; what the backup holds is whole: %s (%s) in %s\n",
			countNoun(res.Blobs, "blob", "blobs"), output.Bytes(res.Bytes), countNoun(res.Images, "image", "images"))
	}
	snapshot()
	return nil
}
