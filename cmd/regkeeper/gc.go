package main

import (
	"fmt"
	"os"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"

	"github.com/regkeeper/regkeeper/gc"
	"github.com/regkeeper/regkeeper/internal/duration"
	"github.com/regkeeper/regkeeper/internal/metrics"
	"github.com/regkeeper/regkeeper/internal/output"
)

func newGCCmd(g *globalOptions) *cobra.Command {
	opts := gc.DefaultOptions()
	var config, root string
	var mf metricsFlag
	cmd := &cobra.Command{
		Use:   "gc (--config registry.yml | --root DIR)",
		Short: "Delete untagged manifests and unreferenced blobs from the registry's storage",
		Long: `gc marks and sweeps directly on a distribution registry's storage, through
distribution's own storage drivers, read from the registry's config.yml (or a
filesystem root given with --root).

Mark: every manifest a tag points at, the children of every reachable index
(even children absent from that repository), every manifest whose subject is
reachable (OCI referrers), and their configs and layers. Sweep, in this order:
untagged manifests, then layer links, then blobs; a crash leaves every live
tag servable and running gc again finishes the job.

--grace (default 1h) spares anything written within it. Manifests of unknown
media types are kept and reported. A lock in storage stops two runs at once.

An untagged manifest a live image names as its base (base.digest annotation)
is kept with its config, unless --no-keep-bases. A plan that would delete
every blob, or collect a storage with blobs but no tag (a wrong --root), is
refused unless --allow-delete-all; so is a plan deleting more than half the
stored bytes (--max-delete-ratio, default 0.5: what missing repositories look
like; a first collection of a registry never collected passes the value the
refusal names).

Online (the default): a push the registry accepts while gc runs still pulls
afterwards. Dead blobs are first moved to a quarantine in the same storage,
gc waits --settle (default 10s) for requests in flight, re-reads everything
written since it began, puts back what those pushes need, and only then
purges the quarantine. A quarantine left by a crashed run is resolved by the
next run. With --config, gc reads the registry's blob-descriptor cache: a
redis cache is cleared of what gc deleted; an in-memory cache makes gc refuse
(the registry would keep answering that deleted blobs exist) unless one of
--offline, --blob-cache-dropped or --restart-after says how that is handled.
--offline (or storage.maintenance.readonly.enabled in the config) says the
registry is stopped or read-only: blobs are deleted at once, no quarantine.`,
		Example: `  # what would be deleted, without deleting
  regkeeper gc --config /etc/docker/registry/config.yml --dry-run

  # collect, keeping the previous digest of every tag
  regkeeper gc --root /var/lib/registry --keep-previous 1 -o json`,
		Args: positional(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (config == "") == (root == "") {
				return usageError("give exactly one of --config or --root")
			}
			if err := checkGCOptions(opts); err != nil {
				return err
			}
			guardDefaults(cmd, &opts)
			ctx := cmd.Context()
			opts.Jobs, opts.Logger, opts.Progress = g.jobs, g.logger(cmd), g.reporter(cmd)
			drv, err := openStorage(cmd, config, root)
			if err == nil {
				err = readGCSettings(config, &opts)
			}
			if err != nil {
				return mf.write(nil, "gc", err)
			}
			if os.Getenv("GOGC") == "" {
				// gc's heap is mostly short-lived (directory listings, link
				// reads, paths): collecting at 1.5x the live heap rather than
				// 2x keeps the peak below the stock collector's at no measured
				// cost in time (bench/gc/run.sh). GOGC set by the user wins.
				defer debug.SetGCPercent(debug.SetGCPercent(50))
			}
			if opts.DryRun {
				// A dry run deletes nothing, so the registry's cache does
				// not stop it: say what the real run would do about it.
				real := opts
				real.DryRun = false
				if err := gc.CheckMode(real); err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "regkeeper gc: warning: the run without --dry-run would refuse: %v\n", err)
				}
			}
			rep, err := gc.Run(ctx, drv, opts)
			if rep != nil {
				if werr := writeGCReport(cmd, g.format(), rep); werr != nil && err == nil {
					err = werr
				}
			}
			set := metrics.New("gc")
			gcMetrics(set, rep)
			return mf.write(set, "gc", err)
		},
	}
	f := cmd.Flags()
	f.StringVar(&config, "config", "", "the registry's configuration file (its storage section is used)")
	f.StringVar(&root, "root", "", "a filesystem storage root (the filesystem driver's rootdirectory)")
	f.BoolVar(&opts.DryRun, "dry-run", false, "print what would be deleted, delete nothing")
	registerGCFlags(f, &opts)
	mf.register(cmd)
	g.registerOutput(cmd)
	return cmd
}

// registerGCFlags declares the flags of a gc run, shared by gc and cycle.
func registerGCFlags(f *pflag.FlagSet, opts *gc.Options) {
	duration.Var(f, &opts.Grace, "grace", "spare manifests, links and blobs written within this long")
	f.BoolVar(&opts.KeepUntagged, "keep-untagged", false, "keep every manifest; only sweep links and blobs nothing references")
	f.IntVar(&opts.KeepPrevious, "keep-previous", 0, "keep the N most recent earlier digests of every tag")
	duration.Var(f, &opts.UploadsOlderThan, "uploads-older-than", "delete uploads started longer ago than this (0: keep all)")
	f.BoolVar(&opts.PruneOrphanSignatures, "prune-orphan-signatures", false, "delete sha256-<hex>.sig/.att/.sbom and referrers fallback tags whose subject is gone")
	f.BoolVar(&opts.PruneEmptyRepos, "prune-empty-repos", false, "delete repositories left with no tag and no manifest")
	f.BoolVar(&opts.NoMarkCache, "no-mark-cache", false, "read every manifest; neither read nor write the mark cache (regkeeper-markcache in the storage)")
	duration.Var(f, &opts.StaleLock, "stale-lock", "take over another run's lock older than this")
	registerGuardFlags(f, opts)
	f.BoolVar(&opts.Offline, "offline", false, "the registry is stopped or read-only: delete blobs at once, without quarantine and settle")
	duration.Var(f, &opts.Settle, "settle", "online: wait this long after quarantining blobs for requests in flight to finish writing")
	f.BoolVar(&opts.CacheDropped, "blob-cache-dropped", false, "the running registry was restarted without its in-memory blob-descriptor cache")
	f.BoolVar(&opts.RestartAfter, "restart-after", false, "the registry (in-memory blob-descriptor cache) is restarted right after gc")
}

// readGCSettings reads the registry settings gc acts on (blob-descriptor
// cache, read-only mode) from its config file, when there is one.
func readGCSettings(config string, opts *gc.Options) error {
	if config == "" {
		return nil
	}
	s, err := gc.ReadSettings(config)
	if err != nil {
		return err
	}
	opts.Registry = s
	return nil
}

func checkGCOptions(opts gc.Options) error {
	if opts.Grace < 0 || opts.UploadsOlderThan < 0 {
		return usageError("--grace and --uploads-older-than must not be negative")
	}
	if opts.KeepPrevious < 0 {
		return usageError("--keep-previous must not be negative")
	}
	if opts.Settle < 0 {
		return usageError("--settle must not be negative")
	}
	return nil
}

func openStorage(cmd *cobra.Command, config, root string) (storagedriver.StorageDriver, error) {
	if config != "" {
		return gc.Open(cmd.Context(), config)
	}
	return gc.OpenRoot(cmd.Context(), root)
}

// writeGCReport renders the report: JSON as the README says, otherwise a summary
// line, a row per repository and the manifests kept without understanding.
func writeGCReport(cmd *cobra.Command, f output.Format, rep *gc.Report) error {
	out := cmd.OutOrStdout()
	if f == output.JSON {
		return output.WriteJSON(out, rep)
	}
	rows := output.Rows{Header: []string{"REPOSITORY", "MANIFESTS DELETED", "BYTES RECLAIMED"}}
	for _, r := range rep.Repositories {
		rows.Add(r.Name, r.ManifestsDeleted, bytesCell(f, r.BytesReclaimed))
	}
	rows.Add("TOTAL", rep.ManifestsDeleted, bytesCell(f, rep.BytesReclaimed))
	if err := output.Write(out, f, rows, rep); err != nil {
		return err
	}
	if f != output.Table {
		return nil
	}
	verb := "deleted"
	if rep.DryRun {
		verb = "would delete (dry run)"
	}
	fmt.Fprintf(out, "\n%s: %d manifests, %d layer links, %d blobs (%s), %d uploads in %.1fs\n", verb,
		rep.ManifestsDeleted, rep.LayerLinksDeleted, rep.BlobsDeleted, output.Bytes(rep.BytesReclaimed), rep.UploadsDeleted, rep.DurationSeconds)
	fmt.Fprintf(out, "the plan deletes %s\n", deleteShareLine(rep))
	if rep.BlobsRestored > 0 || rep.LinksRestored > 0 {
		fmt.Fprintf(out, "pushes during the run: %d blobs restored from the quarantine, %d links written again\n", rep.BlobsRestored, rep.LinksRestored)
	}
	if rep.QuarantineBlobs > 0 {
		fmt.Fprintf(out, "in the quarantine: %s (%s) set aside by a run that did not finish (crashed or interrupted); the next run restores what is referenced and purges the rest\n",
			nBlobs(rep.QuarantineBlobs), output.Bytes(rep.QuarantineBytes))
	}
	if rep.LockHeldBy != "" {
		fmt.Fprintf(out, "another gc is running on this storage: its lock is held by %s\n", rep.LockHeldBy)
	}
	for _, t := range rep.OrphanSignatureTags {
		fmt.Fprintf(out, "%s orphan signature tag %s:%s (its subject is gone)\n", verb, t.Repository, t.Tag)
	}
	if len(rep.RepositoriesDeleted) > 0 {
		fmt.Fprintf(out, "%s empty repositories: %s\n", verb, strings.Join(rep.RepositoriesDeleted, ", "))
	}
	for _, k := range rep.Kept {
		fmt.Fprintf(out, "kept %s@%s: %s\n", k.Repository, k.Digest, k.Reason)
	}
	writeGCKeptLines(out, rep)
	return nil
}

// bytesCell is human-readable in a table, exact elsewhere.
func bytesCell(f output.Format, n int64) any {
	if f == output.Table {
		return output.Bytes(n)
	}
	return n
}

// nBlobs is "1 blob" or "N blobs".
func nBlobs(n int) string {
	if n == 1 {
		return "1 blob"
	}
	return fmt.Sprintf("%d blobs", n)
}
