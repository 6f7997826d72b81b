package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/regkeeper/regkeeper/backup"
	"github.com/regkeeper/regkeeper/gc"
	"github.com/regkeeper/regkeeper/internal/metrics"
	"github.com/regkeeper/regkeeper/internal/output"
)

func newBackupCmd(g *globalOptions) *cobra.Command {
	var (
		filter filterOptions
		mf     metricsFlag
		pf     problemsFlag
		tf     targetFlag
		config string
	)
	opts := backup.DefaultOptions()
	cmd := &cobra.Command{
		Use:   "backup REGISTRY DIR",
		Short: "Back up every image (or a filtered set) into one deduplicated OCI image layout",
		Long: `backup copies the images of a registry into DIR, an OCI image layout: one
content-addressed blob store (a layer shared by 500 images is stored once) and
an index.json naming every image by its full repository:tag (annotation
org.opencontainers.image.ref.name), so that OCI-layout readers can take any
one image from it, e.g.

  skopeo copy oci:DIR:team-a/api:1.0 docker://registry.example.com/team-a/api:1.0

Run it every week on the same DIR. An unchanged tag costs one HEAD request;
only blobs DIR lacks are downloaded; a tag that moved is updated (and, with
--keep-history, its previous digest stays as repo:tag@<date first backed up>).
Nothing in DIR is deleted but by "backup forget --prune".

Every run records a snapshot in DIR/.regkeeper/snapshots: its time, the
registry, every repository:tag and referrer it backed up with its digest, and
whether it finished. verify fails when the last run did not finish; restore
picks the latest complete snapshot, or the one --snapshot names. "backup
snapshots DIR" lists them; "backup forget DIR --keep-... [--prune]" drops
snapshots and the blobs no kept one needs.

DIR may be on object storage: s3://BUCKET/PREFIX[?region=R&endpoint=URL]
(credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws or the
instance role, never on the command line), or, with --target-config FILE and
no DIR, the storage: section of FILE, written as in the registry's own config
(s3, azure, gcs, filesystem; the layout is at its rootdirectory). It is the
same OCI image layout; verify, restore, backup snapshots and backup forget
take the same DIR or --target-config.

With --config (the registry's own config file, as gc takes it) and both the
registry's storage and the backup on one S3 endpoint (CopyObject, in parts
above 5 GiB) or in one Azure storage account (Copy Blob), every blob is
copied inside the store instead of pulled through this machine; manifests
are still fetched and checked (blobsCopiedInStore in the JSON).

Blobs are hashed while they stream into a temporary file, checked against
digest and size, fsynced and renamed into place; index.json is written last,
atomically (and every 30s as a checkpoint). A backup killed at any moment is
finished by running it again.

Multi-arch indexes are backed up with all their children (children that the
registry does not have in that repository are recorded and reported). Cosign
signature tags and referrers fallback tags (sha256-<hex>) are ordinary tags
and are backed up; with --tag, those of the selected images come along.
--referrers (default on) also asks the referrers API where the registry has
one. Referrers of referrers (a signature on an SBOM) are followed, through
the API and through attached tags, to --referrers-depth. Referrers pushed by
digest with neither API nor fallback tag (possible on distribution, which
has no referrers API) cannot be listed over HTTP and are not backed up.

The registry is listed by the same walker as inventory (every page, whatever
page size the registry allows), without reading configs. What is broken in
the registry itself (an index whose platform manifests are absent, a tag
whose manifest or blobs are missing, a manifest that does not parse) is
listed as a problem and not backed up; the exit code stays 0 unless
--fail-on-problems. A repository or tag that could not be read, or a write
that failed, is an error: exit 1.`,
		Example: `  # the weekly pre-GC backup
  regkeeper backup registry.example.com /backups/registry

  # one team, keeping the previous digest of moved tags, as JSON
  regkeeper backup registry.example.com /backups/registry --repo '^team-a/' --keep-history -o json

  # to S3 (or MinIO: add &endpoint=http://127.0.0.1:9000), credentials from the environment
  regkeeper backup registry.example.com 's3://backups/registry?region=eu-west-1'

  # to the storage a registry-style config names (azure, gcs, s3 with every option)
  regkeeper backup registry.example.com --target-config backup-storage.yml

  # the embedded demo registry (plain HTTP)
  regkeeper backup 127.0.0.1:5000 ./backup --insecure`,
		Args: tf.args(1, argRegistry, argBackupDir),
		RunE: func(cmd *cobra.Command, argv []string) error {
			var err error
			if opts.Repo, opts.Tag, err = filter.compile(); err != nil {
				return err
			}
			if opts.ReferrersDepth < 1 {
				return usageError("--referrers-depth must be at least 1, got %d", opts.ReferrersDepth)
			}
			log := g.logger(cmd)
			opts.Client, opts.Logger, opts.Progress = g.client(log), log, g.reporter(cmd)
			l, argv, err := tf.open(cmd, argv, 1)
			if err != nil {
				return err
			}
			if config != "" {
				if opts.Source, err = gc.Open(cmd.Context(), config); err != nil {
					return err
				}
			}
			res, err := backup.RunLayout(cmd.Context(), argv[0], l, opts)
			// A run that failed before it backed anything up (registry
			// unreachable, credentials refused) is the one line on stderr,
			// as in inventory, not a table of zeros; JSON still says it.
			failedEmpty := err != nil && res != nil && res.Images == 0 && res.BlobsWritten == 0 && g.format() != output.JSON
			if res != nil && !failedEmpty {
				warnUnmatched(cmd, &filter, res.Selection)
				if werr := writeBackupResult(cmd, g.format(), res); werr != nil && err == nil {
					err = werr
				}
			}
			if err == nil {
				err = reportBackupErrors(cmd, res.Errors)
			}
			if err == nil {
				err = pf.check(res.Problems)
			}
			set := metrics.New("backup")
			backupMetrics(set, res)
			return mf.write(set, "backup", err)
		},
	}
	filter.register(cmd)
	mf.register(cmd)
	pf.register(cmd)
	tf.register(cmd)
	f := cmd.Flags()
	f.StringVar(&config, "config", "", "the registry's configuration file: when its storage and the backup are S3 buckets of one endpoint or Azure containers of one account, blobs are copied inside the store")
	f.BoolVar(&opts.Referrers, "referrers", opts.Referrers, "also back up referrers listed by the registry's referrers API")
	f.IntVar(&opts.ReferrersDepth, "referrers-depth", opts.ReferrersDepth, "how deep referrers of referrers are followed (1: those of the images only)")
	f.BoolVar(&opts.KeepHistory, "keep-history", false, "keep the previous digest of a moved tag as repo:tag@<date>")
	g.registerOutput(cmd)
	cmd.AddCommand(newBackupSnapshotsCmd(g), newBackupForgetCmd(g))
	return cmd
}

func writeBackupResult(cmd *cobra.Command, f output.Format, res *backup.Result) error {
	out := cmd.OutOrStdout()
	if f == output.JSON {
		return output.WriteJSON(out, res)
	}
	rows := output.Rows{Header: []string{"IMAGES", "UNCHANGED", "NEW", "UPDATED", "REFERRERS", "BLOBS WRITTEN", "BYTES WRITTEN", "BLOBS SKIPPED", "BYTES SKIPPED"}}
	rows.Add(res.Images, res.Unchanged, res.Added, res.Updated, res.Referrers, res.BlobsWritten, bytesCell(f, res.BytesWritten), res.BlobsSkipped, bytesCell(f, res.BytesSkipped))
	if err := output.Write(out, f, rows, res); err != nil {
		return err
	}
	if err := writeProblems(cmd, f, res.Problems); err != nil {
		return err
	}
	if f == output.Table {
		state := "complete"
		if !res.Complete {
			state = "did not finish"
		}
		fmt.Fprintf(out, "\n%s in %.1fs; snapshot %s (%s)\n", countNoun(res.Images, "image", "images"), res.DurationSeconds, res.Snapshot, state)
	}
	return nil
}

// reportBackupErrors prints each error on stderr and, if there were any,
// returns errPartial (exit 1).
func reportBackupErrors(cmd *cobra.Command, errs []backup.Error) error {
	for _, e := range errs {
		where := e.Repository
		switch {
		case where == "":
			where = e.Digest // an entry of a layout that names no repository
		case e.Tag != "":
			where += ":" + e.Tag
		case e.Digest != "":
			where += "@" + e.Digest
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "error: %s: %s\n", where, e.Error)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%d repositories or images failed: %w", len(errs), errPartial)
	}
	return nil
}

// targetFlag is --target-config FILE of the commands that read or write a
// backup: the backup is then on the storage a registry-style config's
// storage: section names (s3, azure, gcs, filesystem), at its
// rootdirectory, and the DIR argument is not given. Without it, DIR is a
// local directory or an s3://BUCKET/PREFIX URL.
type targetFlag struct{ config string }

func (t *targetFlag) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&t.config, "target-config", "", "the backup is on the storage of this YAML file's storage: section (as in the registry's config); DIR is then left out")
}

// args is positional(want...) with the argument at dir left out under
// --target-config.
func (t *targetFlag) args(dir int, want ...arg) cobra.PositionalArgs {
	return func(cmd *cobra.Command, got []string) error {
		if t.config == "" {
			return positional(want...)(cmd, got)
		}
		return positional(append(append([]arg{}, want[:dir]...), want[dir+1:]...)...)(cmd, got)
	}
}

// open opens the backup argv names at dir (or --target-config), and
// returns argv with DIR in its place either way.
func (t *targetFlag) open(cmd *cobra.Command, argv []string, dir int) (backup.Layout, []string, error) {
	if t.config != "" {
		argv = append(append(append([]string{}, argv[:dir]...), t.config), argv[dir:]...)
	}
	l, err := openTarget(cmd, argv[dir], t.config)
	return l, argv, err
}

// openTarget is backup.OpenTarget; a target that is not one (an unknown
// scheme, an s3:// URL that does not parse) is a usage error.
func openTarget(cmd *cobra.Command, target, config string) (backup.Layout, error) {
	l, err := backup.OpenTarget(cmd.Context(), target, config)
	if errors.Is(err, backup.ErrBadTarget) {
		return l, usageError("%v", err)
	}
	return l, err
}
