package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/regkeeper/regkeeper/backup"
	"github.com/regkeeper/regkeeper/internal/output"
)

var argSnapshotsDir = arg{"DIR", "the backup whose snapshots to list"}

func newBackupSnapshotsCmd(g *globalOptions) *cobra.Command {
	var tf targetFlag
	cmd := &cobra.Command{
		Use:   "snapshots DIR",
		Short: "List the snapshots of a backup: one per backup run, with what it holds and whether it finished",
		Long: `snapshots lists the record every backup run leaves in DIR, oldest first: its
ID, time, registry, status (complete; incomplete, with the reason; running,
for a run that was killed or still runs) and how many images and referrers
it backed up. restore --snapshot ID restores one of them; -o json lists them
for a script.`,
		Example: `  regkeeper backup snapshots /backups/registry

  # the ID of the latest complete snapshot
  regkeeper backup snapshots /backups/registry -o json | jq -r '[.[] | select(.status == "complete")][-1].id'`,
		Args: tf.args(0, argSnapshotsDir),
		RunE: func(cmd *cobra.Command, argv []string) error {
			l, argv, err := tf.open(cmd, argv, 0)
			if err != nil {
				return err
			}
			if err := l.Check(); err != nil {
				return err
			}
			snaps, err := l.ReadSnapshots()
			if err != nil {
				return err
			}
			infos := make([]backup.SnapshotInfo, 0, len(snaps))
			for _, s := range snaps {
				infos = append(infos, s.Info())
			}
			f := g.format()
			out := cmd.OutOrStdout()
			if f == output.JSON {
				return output.WriteJSON(out, infos)
			}
			if len(infos) == 0 && f == output.Table {
				fmt.Fprintf(out, "no snapshots in %s: a backup made before regkeeper recorded its runs, or another tool's layout; its completeness is unknown\n", argv[0])
				return nil
			}
			rows := output.Rows{Header: []string{"ID", "TIME", "REGISTRY", "STATUS", "IMAGES", "REFERRERS", "REASON"}}
			for _, in := range infos {
				rows.Add(in.ID, in.Time.Format(time.RFC3339), in.Registry, in.Status, in.Images, in.Referrers, in.Reason)
			}
			return output.Write(out, f, rows, infos)
		},
	}
	tf.register(cmd)
	g.registerOutput(cmd)
	return cmd
}

var argForgetDir = arg{"DIR", "the backup whose snapshots to forget"}

func newBackupForgetCmd(g *globalOptions) *cobra.Command {
	var opts backup.ForgetOptions
	var tf targetFlag
	cmd := &cobra.Command{
		Use:   "forget DIR --keep-last N|--keep-daily N|--keep-weekly N|--keep-monthly N [--prune] [--dry-run]",
		Short: "Drop the snapshots a keep policy does not keep, and with --prune the blobs no kept snapshot needs",
		Long: `forget judges the complete snapshots of a backup by a keep policy, as restic's
forget does: the --keep-last N newest, and the newest of each of the
--keep-daily N latest days, --keep-weekly N latest ISO weeks and
--keep-monthly N latest months (UTC) that have one. A snapshot any rule keeps
is kept. A snapshot of a run that did not finish is kept while it is newer
than the latest complete one, and dropped once a complete run follows it.
Each snapshot is listed with the rules that keep it or why it goes.

--prune then deletes every blob that no kept snapshot needs and removes from
index.json the entries of no kept snapshot (tags since deleted from the
registry, history entries, the previous digests of moved tags). The plan is
made before anything is deleted: the blobs and bytes it frees; a kept
manifest that cannot be read stops it (run verify --repair first).
--dry-run shows the plan and changes nothing. forget holds the backup's lock:
it does not run beside a backup.`,
		Example: `  # what a weekly cron keeps: 4 weeks and 6 months, the last run always
  regkeeper backup forget /backups/registry --keep-last 1 --keep-weekly 4 --keep-monthly 6 --prune --dry-run
  regkeeper backup forget /backups/registry --keep-last 1 --keep-weekly 4 --keep-monthly 6 --prune`,
		Args: tf.args(0, argForgetDir),
		RunE: func(cmd *cobra.Command, argv []string) error {
			p := opts.Policy
			if p.Last < 0 || p.Daily < 0 || p.Weekly < 0 || p.Monthly < 0 {
				return usageError("--keep-* take a count of 0 or more")
			}
			if p.Empty() {
				return usageError("forget needs a policy: at least one of --keep-last, --keep-daily, --keep-weekly, --keep-monthly")
			}
			opts.Logger = g.logger(cmd)
			opts.Jobs = g.jobs
			l, _, err := tf.open(cmd, argv, 0)
			if err != nil {
				return err
			}
			res, err := backup.ForgetLayout(cmd.Context(), l, opts)
			if err != nil {
				return err
			}
			return writeForgetResult(cmd, g.format(), res)
		},
	}
	f := cmd.Flags()
	f.IntVar(&opts.Policy.Last, "keep-last", 0, "keep the N newest complete snapshots")
	f.IntVar(&opts.Policy.Daily, "keep-daily", 0, "keep the newest snapshot of each of the N latest days that have one")
	f.IntVar(&opts.Policy.Weekly, "keep-weekly", 0, "keep the newest snapshot of each of the N latest ISO weeks that have one")
	f.IntVar(&opts.Policy.Monthly, "keep-monthly", 0, "keep the newest snapshot of each of the N latest months that have one")
	f.BoolVar(&opts.Prune, "prune", false, "delete the blobs no kept snapshot needs")
	f.BoolVar(&opts.DryRun, "dry-run", false, "show what would be forgotten and pruned; change nothing")
	tf.register(cmd)
	g.registerOutput(cmd)
	return cmd
}

func writeForgetResult(cmd *cobra.Command, f output.Format, res *backup.ForgetResult) error {
	out := cmd.OutOrStdout()
	if f == output.JSON {
		return output.WriteJSON(out, res)
	}
	rows := output.Rows{Header: []string{"ID", "TIME", "STATUS", "IMAGES", "ACTION", "REASONS"}}
	for _, d := range res.Snapshots {
		action := "remove"
		if d.Keep {
			action = "keep"
		}
		rows.Add(d.ID, d.Time.Format(time.RFC3339), d.Status, d.Images, action, strings.Join(d.Reasons, ", "))
	}
	if err := output.Write(out, f, rows, res); err != nil {
		return err
	}
	if f != output.Table {
		return nil
	}
	verb := "removed"
	if res.DryRun {
		verb = "would remove"
	}
	fmt.Fprintf(out, "\nkept %s, %s %s\n", countNoun(res.Kept, "snapshot", "snapshots"), verb, countNoun(res.Removed, "snapshot", "snapshots"))
	if p := res.Prune; p != nil {
		verb = "pruned"
		if res.DryRun {
			verb = "prune would delete"
		}
		fmt.Fprintf(out, "%s %s (%s) no kept snapshot needs, and %s of index.json; %s (%s) stay\n",
			verb, countNoun(p.Blobs, "blob", "blobs"), output.Bytes(p.Bytes), countNoun(len(p.EntriesDropped), "entry", "entries"),
			countNoun(p.KeptBlobs, "blob", "blobs"), output.Bytes(p.KeptBytes))
	}
	return nil
}

// countNoun is "1 blob", "2 blobs".
func countNoun(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
