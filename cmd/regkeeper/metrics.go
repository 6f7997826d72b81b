package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/regkeeper/regkeeper/audit"
	"github.com/regkeeper/regkeeper/backup"
	"github.com/regkeeper/regkeeper/cycle"
	"github.com/regkeeper/regkeeper/gc"
	"github.com/regkeeper/regkeeper/internal/metrics"
	"github.com/regkeeper/regkeeper/inventory"
	"github.com/regkeeper/regkeeper/retain"
)

// Every metric is regkeeper_<command>_<thing>. The things of each command
// are the tables below, one line a metric; `cycle` writes the things of
// every step it ran as regkeeper_cycle_<step>_<thing>, so
// regkeeper_gc_bytes_reclaimed from `gc` is regkeeper_cycle_gc_bytes_reclaimed
// from `cycle`. Every command also writes _success and
// _last_success_timestamp_seconds (internal/metrics). The README's metrics
// table lists them all, and TestMetricsTableInREADME holds it to what the
// commands write.

// metricsFlag is --metrics-file, on gc, backup, audit, retain and cycle.
type metricsFlag struct{ path string }

func (m *metricsFlag) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&m.path, "metrics-file", "", "write Prometheus metrics here (node_exporter textfile collector), atomically")
}

// write writes set (which may be nil after an early failure) when the flag
// is given: _success is 1 only when runErr is nil, so pass the error that
// decides the exit code. A failure to write is returned only if the run
// itself succeeded.
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

// metric is one gauge of a result: a value, or (with label) one value per
// label value.
type metric[T any] struct {
	name, help string
	value      func(T) float64
	label      string
	values     func(T) map[string]float64
}

// emit sets every metric of ms from r, each named prefix+name.
func emit[T any](set *metrics.Set, prefix string, ms []metric[T], r T) {
	for _, m := range ms {
		if m.values == nil {
			set.Gauge(prefix+m.name, m.help, m.value(r))
			continue
		}
		for lv, v := range m.values(r) {
			set.Gauge(prefix+m.name, m.help, v, m.label, lv)
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

var gcMetricTable = []metric[*gc.Report]{
	{name: "bytes_reclaimed", help: "Bytes of blob files deleted (or, on a dry run, that would be).", value: func(r *gc.Report) float64 { return float64(r.BytesReclaimed) }},
	{name: "blobs_deleted", help: "Blobs deleted.", value: func(r *gc.Report) float64 { return float64(r.BlobsDeleted) }},
	{name: "manifests_deleted", help: "Untagged manifests deleted.", value: func(r *gc.Report) float64 { return float64(r.ManifestsDeleted) }},
	{name: "layer_links_deleted", help: "Repository layer links deleted.", value: func(r *gc.Report) float64 { return float64(r.LayerLinksDeleted) }},
	{name: "uploads_deleted", help: "Abandoned uploads deleted.", value: func(r *gc.Report) float64 { return float64(r.UploadsDeleted) }},
	{name: "duration_seconds", help: "Duration of the gc run.", value: func(r *gc.Report) float64 { return r.DurationSeconds }},
	{name: "dry_run", help: "1 if the run deleted nothing (--dry-run).", value: func(r *gc.Report) float64 { return b2f(r.DryRun) }},
	{name: "manifests_kept_as_base", help: "Untagged manifests kept because a live image names them as its base.", value: func(r *gc.Report) float64 { return float64(r.ManifestsKeptAsBase) }},
	{name: "manifests_spared_by_grace", help: "Manifests a run with no grace would have deleted.", value: func(r *gc.Report) float64 { return float64(r.ManifestsSparedByGrace) }},
	{name: "blobs_spared_by_grace", help: "Blobs a run with no grace would have deleted.", value: func(r *gc.Report) float64 { return float64(r.BlobsSparedByGrace) }},
	{name: "bytes_spared_by_grace", help: "Bytes of the blobs a run with no grace would have deleted.", value: func(r *gc.Report) float64 { return float64(r.BytesSparedByGrace) }},
}

var backupMetricTable = []metric[*backup.Result]{
	{name: "images", help: "Images (tags) in the backup, of those selected.", value: func(r *backup.Result) float64 { return float64(r.Images) }},
	{name: "blobs_written", help: "Blobs this run wrote.", value: func(r *backup.Result) float64 { return float64(r.BlobsWritten) }},
	{name: "bytes_written", help: "Bytes this run wrote.", value: func(r *backup.Result) float64 { return float64(r.BytesWritten) }},
	{name: "blobs_skipped", help: "Blobs the backup already had.", value: func(r *backup.Result) float64 { return float64(r.BlobsSkipped) }},
	{name: "bytes_skipped", help: "Bytes the backup already had.", value: func(r *backup.Result) float64 { return float64(r.BytesSkipped) }},
	{name: "errors", help: "Repositories or images that could not be backed up.", value: func(r *backup.Result) float64 { return float64(len(r.Errors)) }},
	{name: "problems", help: "Problems in the registry (broken indexes, missing or corrupt manifests), not backed up.", value: func(r *backup.Result) float64 { return float64(len(r.Problems)) }},
	{name: "duration_seconds", help: "Duration of the backup.", value: func(r *backup.Result) float64 { return r.DurationSeconds }},
}

// auditRun is an audit result and how long it took.
type auditRun struct {
	res  *audit.Result
	took time.Duration
}

var auditMetricTable = []metric[auditRun]{
	{name: "images", help: "Images (tag and platform) audited.", value: func(a auditRun) float64 { return float64(len(a.res.Images)) }},
	{name: "findings", help: "Images (tag and platform) with a finding, by reason (every reason, 0 included).", label: "reason", values: func(a auditRun) map[string]float64 {
		counts, _ := a.res.Counts()
		out := map[string]float64{}
		for reason, n := range counts {
			out[reason] = float64(n)
		}
		return out
	}},
	{name: "not_judged", help: "Tags (and platforms) not judged because they are not images, by kind (every kind, 0 included).", label: "kind", values: func(a auditRun) map[string]float64 {
		out := map[string]float64{}
		for _, k := range audit.NotJudgedKinds {
			out[k] = 0
		}
		for _, n := range a.res.NotJudged {
			out[n.Kind]++
		}
		return out
	}},
	{name: "warnings", help: "Warnings of the audit: --ban, --allow, --repo, --tag or policy patterns that match nothing.", value: func(a auditRun) float64 { return float64(len(a.res.Warnings)) }},
	{name: "errors", help: "Repositories or tags that could not be read.", value: func(a auditRun) float64 { return float64(len(a.res.Errors)) }},
	{name: "problems", help: "Problems in the registry (broken indexes, missing or corrupt manifests) among the audited tags.", value: func(a auditRun) float64 { return float64(len(a.res.Problems)) }},
	{name: "duration_seconds", help: "Duration of the audit.", value: func(a auditRun) float64 { return a.took.Seconds() }},
}

var inventoryMetricTable = []metric[*inventory.Result]{
	{name: "tags", help: "Tags inventoried (the whole registry).", value: func(r *inventory.Result) float64 { return float64(len(r.Images)) }},
	{name: "errors", help: "Repositories or tags that could not be read.", value: func(r *inventory.Result) float64 { return float64(len(r.Errors)) }},
	{name: "problems", help: "Problems in the registry (broken indexes, missing or corrupt manifests).", value: func(r *inventory.Result) float64 { return float64(len(r.Problems)) }},
}

var verifyMetricTable = []metric[*backup.VerifyResult]{
	{name: "blobs", help: "Blobs of the backup re-hashed.", value: func(r *backup.VerifyResult) float64 { return float64(r.Blobs) }},
	{name: "problems", help: "Corrupt, missing or mis-sized blobs found in the backup.", value: func(r *backup.VerifyResult) float64 { return float64(len(r.Problems)) }},
}

var retainMetricTable = []metric[*retain.Result]{
	{name: "tags_kept", help: "Tags the policy keeps (covered repositories only).", value: func(r *retain.Result) float64 { return float64(r.Kept) }},
	{name: "tags_planned", help: "Tags the policy does not keep: what the run removes (or, on a dry run or a refused plan, would).", value: func(r *retain.Result) float64 { return float64(r.Removed) }},
	{name: "tags_removed", help: "Tags removed by this run (0 on a dry run or a refused plan).", value: func(r *retain.Result) float64 { return float64(r.Untagged) }},
	{name: "bytes_freed", help: "Bytes of blobs only the planned tags hold on to (what gc then frees).", value: func(r *retain.Result) float64 { return float64(r.BytesFreed) }},
	{name: "blocked", help: "1 if nothing was removed because usage evidence was absent or stale.", value: func(r *retain.Result) float64 { return b2f(len(r.Blocked) > 0) }},
	{name: "repositories_not_covered", help: "Repositories no policy covers (untouched).", value: func(r *retain.Result) float64 { return float64(r.NotCovered) }},
	{name: "errors", help: "Repositories or tags that could not be read or untagged.", value: func(r *retain.Result) float64 { return float64(len(r.Errors)) }},
	{name: "problems", help: "Problems in the registry (broken indexes, missing or corrupt manifests).", value: func(r *retain.Result) float64 { return float64(len(r.Problems)) }},
	{name: "dry_run", help: "1 if the run removed nothing by request (--dry-run).", value: func(r *retain.Result) float64 { return b2f(r.DryRun) }},
}

func retainMetrics(set *metrics.Set, res *retain.Result, took time.Duration) {
	if res != nil && res.Plan != nil {
		emit(set, "", retainMetricTable, res)
		set.Gauge("duration_seconds", "Duration of the retain run.", took.Seconds())
	}
}

// cycleRun is a cycle result and how long the whole cycle took.
type cycleRun struct {
	res  *cycle.Result
	took time.Duration
}

var cycleMetricTable = []metric[cycleRun]{
	{name: "step_success", help: "1 if the step ran to its end, else 0 (failed or skipped).", label: "step", values: func(c cycleRun) map[string]float64 {
		out := map[string]float64{}
		for _, st := range c.res.Steps {
			out[st.Name] = b2f(st.Status == "ok" || st.Status == "partial")
		}
		return out
	}},
	{name: "step_duration_seconds", help: "Duration of each step.", label: "step", values: func(c cycleRun) map[string]float64 {
		out := map[string]float64{}
		for _, st := range c.res.Steps {
			out[st.Name] = st.DurationSeconds
		}
		return out
	}},
	{name: "errors", help: "Repositories or tags that could not be read.", value: func(c cycleRun) float64 { return float64(len(c.res.Errors)) }},
	{name: "problems", help: "Problems in the registry (broken indexes, missing or corrupt manifests).", value: func(c cycleRun) float64 { return float64(len(c.res.Problems)) }},
	{name: "duration_seconds", help: "Duration of the whole cycle.", value: func(c cycleRun) float64 { return c.took.Seconds() }},
}

func gcMetrics(set *metrics.Set, rep *gc.Report) {
	if rep != nil {
		emit(set, "", gcMetricTable, rep)
	}
}

func backupMetrics(set *metrics.Set, res *backup.Result) {
	if res != nil {
		emit(set, "", backupMetricTable, res)
	}
}

func auditMetrics(set *metrics.Set, res *audit.Result, took time.Duration) {
	if res != nil {
		emit(set, "", auditMetricTable, auditRun{res, took})
	}
}

// cycleMetrics writes the cycle's own metrics and those of every step that
// produced a result, as regkeeper_cycle_<step>_<thing>.
func cycleMetrics(set *metrics.Set, res *cycle.Result, took time.Duration) {
	if res == nil {
		return
	}
	emit(set, "", cycleMetricTable, cycleRun{res, took})
	stepTook := func(name string) time.Duration {
		if st := res.Step(name); st != nil {
			return time.Duration(st.DurationSeconds * float64(time.Second))
		}
		return 0
	}
	if res.Inventory != nil {
		emit(set, cycle.StepInventory+"_", inventoryMetricTable, res.Inventory)
	}
	if res.Audit != nil {
		emit(set, cycle.StepAudit+"_", auditMetricTable, auditRun{res.Audit, stepTook(cycle.StepAudit)})
	}
	if res.Backup != nil {
		emit(set, cycle.StepBackup+"_", backupMetricTable, res.Backup)
	}
	if res.Verify != nil {
		emit(set, cycle.StepVerify+"_", verifyMetricTable, res.Verify)
	}
	if res.Retain != nil && res.Retain.Plan != nil {
		emit(set, cycle.StepRetain+"_", retainMetricTable, res.Retain)
	}
	if res.GC != nil {
		emit(set, cycle.StepGC+"_", gcMetricTable, res.GC)
	}
}
