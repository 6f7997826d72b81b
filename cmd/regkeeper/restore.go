package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/regkeeper/regkeeper/backup"
	"github.com/regkeeper/regkeeper/internal/output"
)

func newRestoreCmd(g *globalOptions) *cobra.Command {
	var filter filterOptions
	var opts backup.RestoreOptions
	cmd := &cobra.Command{
		Use:   "restore DIR REGISTRY",
		Short: "Push a backup (or part of it) to a registry, digests unchanged",
		Long: `restore pushes the images of a backup made by regkeeper backup to the same or
another registry, into the repositories they came from. Every manifest is
pushed as the bytes that were backed up, with its media type, so every digest
(and every signature over it) stays valid. Blobs first, then manifests
children before indexes, then tags, then referrers. Blobs and manifests the
registry already has are not pushed again.

History entries (--keep-history) are pushed by digest, untagged. With --tag,
the referrers of the selected images are restored too. --dry-run lists what
would be pushed and contacts no registry.`,
		Example: `  # everything, to a new registry
  regkeeper restore /backups/registry registry2.example.com

  # what one tag would push
  regkeeper restore /backups/registry registry.example.com --repo '^team-a/api$' --tag '^1\.0$' --dry-run`,
		Args: positional(argRestoreDir, argTarget),
		RunE: func(cmd *cobra.Command, argv []string) error {
			var err error
			if opts.Repo, opts.Tag, err = filter.compile(); err != nil {
				return err
			}
			log := g.logger(cmd)
			opts.Client, opts.Logger, opts.Progress = g.client(log), log, g.reporter(cmd)
			res, err := backup.Restore(cmd.Context(), argv[0], argv[1], opts)
			if res != nil {
				if werr := writeRestoreResult(cmd, g.format(), res); werr != nil && err == nil {
					err = werr
				}
			}
			if err != nil {
				return err
			}
			return reportBackupErrors(cmd, res.Errors)
		},
	}
	filter.register(cmd)
	cmd.Flags().BoolVar(&opts.DryRun, "dry-run", false, "list what would be pushed; push nothing")
	g.registerOutput(cmd)
	return cmd
}

func writeRestoreResult(cmd *cobra.Command, f output.Format, res *backup.RestoreResult) error {
	out := cmd.OutOrStdout()
	if f == output.JSON {
		return output.WriteJSON(out, res)
	}
	rows := output.Rows{Header: []string{"REPOSITORY", "TAG", "KIND", "DIGEST", "MANIFESTS", "BLOBS", "BYTES"}}
	for _, e := range res.Entries {
		digest := e.Digest
		if f == output.Table {
			digest = output.ShortDigest(digest)
		}
		rows.Add(e.Repository, e.Tag, e.Kind, digest, e.Manifests, e.Blobs, bytesCell(f, e.Bytes))
	}
	if err := output.Write(out, f, rows, res); err != nil {
		return err
	}
	if f != output.Table {
		return nil
	}
	if res.DryRun {
		fmt.Fprintf(out, "\ndry run: would push %d images, %d history entries, %d referrers\n", res.Images, res.History, res.Referrers)
		return nil
	}
	fmt.Fprintf(out, "\npushed %d manifests and %d blobs (%s), mounted %d blobs across repositories; already there: %d manifests, %d blobs (%s); %.1fs\n",
		res.ManifestsPushed, res.BlobsPushed, output.Bytes(res.BytesPushed), res.BlobsMounted, res.ManifestsSkipped, res.BlobsSkipped, output.Bytes(res.BytesSkipped), res.DurationSeconds)
	return nil
}
