package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/regkeeper/regkeeper/audit"
	"github.com/regkeeper/regkeeper/backup"
	"github.com/regkeeper/regkeeper/gc"
	"github.com/regkeeper/regkeeper/internal/metrics"
)

// metricsFlag is --metrics-file, on gc, backup, audit and cycle.
type metricsFlag struct{ path string }

func (m *metricsFlag) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&m.path, "metrics-file", "", "write Prometheus metrics here (node_exporter textfile collector), atomically")
}

// write writes set (which may be nil after an early failure) when the flag
// is given. A failure to write is returned only if the run itself succeeded.
func (m *metricsFlag) write(set *metrics.Set, command string, runErr error) error {
	if m.path == "" {
		return runErr
	}
	if set == nil {
		set = metrics.New(command)
	}
	if err := set.Write(m.path, runErr == nil, time.Now()); err != nil && runErr == nil {
		return err
	}
	return runErr
}

func gcMetrics(set *metrics.Set, rep *gc.Report) {
	if rep == nil {
		return
	}
	set.Gauge("bytes_reclaimed", "Bytes of blob files deleted (or, on a dry run, that would be).", float64(rep.BytesReclaimed))
	set.Gauge("blobs_deleted", "Blobs deleted.", float64(rep.BlobsDeleted))
	set.Gauge("manifests_deleted", "Untagged manifests deleted.", float64(rep.ManifestsDeleted))
	set.Gauge("layer_links_deleted", "Repository layer links deleted.", float64(rep.LayerLinksDeleted))
	set.Gauge("uploads_deleted", "Abandoned uploads deleted.", float64(rep.UploadsDeleted))
	set.Gauge("duration_seconds", "Duration of the run.", rep.DurationSeconds)
	set.Gauge("spared_by_grace_manifests", "Unreferenced manifests kept because they were written within --grace.", float64(rep.SparedByGrace.Manifests))
	set.Gauge("spared_by_grace_blobs", "Unreferenced blobs kept because they were written within --grace.", float64(rep.SparedByGrace.Blobs))
	set.Gauge("spared_by_grace_bytes", "Bytes of the blobs --grace kept.", float64(rep.SparedByGrace.Bytes))
	set.Gauge("kept_as_base_manifests", "Untagged manifests kept as the base of live images.", float64(rep.KeptAsBase))
	dry := 0.0
	if rep.DryRun {
		dry = 1
	}
	set.Gauge("dry_run", "1 if the run deleted nothing (--dry-run).", dry)
}

func backupMetrics(set *metrics.Set, res *backup.Result) {
	if res == nil {
		return
	}
	set.Gauge("images", "Images (tags) in the backup, of those selected.", float64(res.Images))
	set.Gauge("blobs_written", "Blobs this run wrote.", float64(res.BlobsWritten))
	set.Gauge("bytes_written", "Bytes this run wrote.", float64(res.BytesWritten))
	set.Gauge("blobs_skipped", "Blobs the backup already had.", float64(res.BlobsSkipped))
	set.Gauge("bytes_skipped", "Bytes the backup already had.", float64(res.BytesSkipped))
	set.Gauge("errors", "Repositories or images that could not be backed up.", float64(len(res.Errors)))
	set.Gauge("duration_seconds", "Duration of the run.", res.DurationSeconds)
}

func auditMetrics(set *metrics.Set, res *audit.Result, took time.Duration) {
	if res == nil {
		return
	}
	set.Gauge("images", "Images (tag and platform) audited.", float64(len(res.Images)))
	counts, _ := res.Counts()
	for reason, n := range counts {
		set.Gauge("findings", "Images (tag and platform) with a finding, by reason.", float64(n), "reason", reason)
	}
	set.Gauge("errors", "Repositories or tags that could not be read.", float64(len(res.Errors)))
	set.Gauge("duration_seconds", "Duration of the run.", took.Seconds())
}
