package main

import (
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"

	"github.com/regkeeper/regkeeper/backup"
	"github.com/regkeeper/regkeeper/internal/output"
)

func newRestoreCmd(g *globalOptions) *cobra.Command {
	var filter filterOptions
	var maps []string
	var tf targetFlag
	opts := backup.RestoreOptions{ReferrersDepth: backup.DefaultReferrersDepth}
	cmd := &cobra.Command{
		Use:   "restore DIR REGISTRY",
		Short: "Push a backup or any OCI image layout (or part of it) to a registry, digests unchanged",
		Long: `restore pushes the images of an OCI image layout to a registry: a backup made
by regkeeper backup, or a layout written by crane pull --format oci, skopeo
copy ... oci:, regctl image copy ... ocidir:// or oras cp --to-oci-layout.
Every manifest is pushed as the bytes in the layout, with its media type, so
every digest (and every signature over it) stays valid. Blobs first, then
manifests children before indexes, then tags, then referrers. Blobs and
manifests the registry already has are not pushed again.

Where each entry of the layout's index.json goes:
  - regkeeper's own annotations (io.regkeeper.repository, .tag), when present;
  - else org.opencontainers.image.ref.name: a full reference (host/repo:tag,
    the host is dropped), a repo:tag, or a bare tag, which goes to
    --repository;
  - an entry with no name at all that an index names is pushed with it; one
    whose subject is restored is a referrer and goes beside its subject;
    anything else goes by digest to --repository, or is reported, not
    guessed.
--map OLD=NEW moves repositories by prefix (team-a/api to archive/team-a/api
with --map team-a=archive/team-a).

Referrers of referrers (a signature on an SBOM) are restored to
--referrers-depth. On a registry without the referrers API, the referrers
tag sha256-<hex> of each subject is written or extended, as the OCI
distribution spec describes, so that clients find the referrers there.

What is restored from a regkeeper backup is the latest complete snapshot
(the record of the last backup run that finished): the tags and referrers
that run found, at their digests then. --snapshot ID restores an earlier one
(regkeeper backup snapshots DIR lists them), so last week's app:prod is
restorable by name; --snapshot all restores every entry of index.json, with
the history entries and tags since deleted from the registry. A backup whose
last run did not finish is said so; one whose runs never finished is not
restored without --snapshot. A layout with no snapshot (an older backup,
another tool's) restores its index.json, and is said to be of unknown
completeness.

History entries (--keep-history) are pushed by digest, untagged. With --tag,
the referrers, signature and fallback tags of the selected images are
restored too. --dry-run lists what would be pushed and contacts no registry.

DIR may be an s3:// URL, or left out with --target-config FILE (as in
regkeeper backup): the backup is read where it is, blobs streamed from the
store to the registry.`,
		Example: `  # everything, to a new registry
  regkeeper restore /backups/registry registry2.example.com

  # what one tag would push
  regkeeper restore /backups/registry registry.example.com --repo '^team-a/api$' --tag '^1\.0$' --dry-run

  # a layout from regctl or oras (bare tags) into one repository
  regkeeper restore ./api-layout registry.example.com --repository team-a/api

  # a backup into other repositories
  regkeeper restore /backups/registry registry.example.com --map team-a=archive/team-a

  # last week's team-a/api:prod, by the snapshot of that run
  regkeeper backup snapshots /backups/registry
  regkeeper restore /backups/registry registry.example.com --snapshot 3f9c2a1b --repo '^team-a/api$' --tag '^prod$'

  # from a backup on S3
  regkeeper restore 's3://backups/registry?region=eu-west-1' registry2.example.com`,
		Args: tf.args(0, argRestoreDir, argTarget),
		RunE: func(cmd *cobra.Command, argv []string) error {
			var err error
			if opts.Repo, opts.Tag, err = filter.compile(); err != nil {
				return err
			}
			opts.Map = nil
			for _, m := range maps {
				mp, err := backup.ParseMapping(m)
				if err != nil {
					return usageError("--map: %v", err)
				}
				opts.Map = append(opts.Map, mp)
			}
			if opts.Repository != "" {
				if _, err := name.NewRepository("example.invalid/"+opts.Repository, name.StrictValidation); err != nil {
					return usageError("--repository: %q is not a repository name", opts.Repository)
				}
			}
			if opts.ReferrersDepth < 1 {
				return usageError("--referrers-depth must be at least 1, got %d", opts.ReferrersDepth)
			}
			log := g.logger(cmd)
			opts.Client, opts.Logger, opts.Progress = g.client(log), log, g.reporter(cmd)
			l, argv, err := tf.open(cmd, argv, 0)
			if err != nil {
				return err
			}
			res, err := backup.RestoreLayout(cmd.Context(), l, argv[1], opts)
			if res != nil && res.Note != "" {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning: "+res.Note)
			}
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
	tf.register(cmd)
	f := cmd.Flags()
	f.BoolVar(&opts.DryRun, "dry-run", false, "list what would be pushed; push nothing")
	f.StringVar(&opts.Snapshot, "snapshot", "latest", "the backup run to restore: latest (complete), an ID from 'backup snapshots', or all (every entry of index.json)")
	f.StringVar(&opts.Repository, "repository", "", "repository for entries named by a bare tag, and (by digest) for entries with no name")
	f.StringArrayVar(&maps, "map", nil, "OLD=NEW: restore repositories under prefix OLD to NEW instead (repeatable)")
	f.IntVar(&opts.ReferrersDepth, "referrers-depth", opts.ReferrersDepth, "how deep referrers of referrers are restored (1: those of the images only)")
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
		fmt.Fprintf(out, "\ndry run: would push %s, %s, %s, %s, %d untagged\n", countNoun(res.Images, "image", "images"),
			countNoun(res.History, "history entry", "history entries"), countNoun(res.Referrers, "referrer", "referrers"),
			countNoun(res.Attached, "attached tag", "attached tags"), res.Untagged)
		return nil
	}
	fmt.Fprintf(out, "\npushed %s and %s (%s), mounted %s across repositories; already there: %s, %s (%s); %s written; %.1fs\n",
		countNoun(res.ManifestsPushed, "manifest", "manifests"), countNoun(res.BlobsPushed, "blob", "blobs"), output.Bytes(res.BytesPushed),
		countNoun(res.BlobsMounted, "blob", "blobs"), countNoun(res.ManifestsSkipped, "manifest", "manifests"),
		countNoun(res.BlobsSkipped, "blob", "blobs"), output.Bytes(res.BytesSkipped),
		countNoun(res.ReferrersTagsWritten, "referrers tag", "referrers tags"), res.DurationSeconds)
	return nil
}
