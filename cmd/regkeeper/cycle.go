package main

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/regkeeper/regkeeper/backup"
	"github.com/regkeeper/regkeeper/cycle"
	"github.com/regkeeper/regkeeper/gc"
	"github.com/regkeeper/regkeeper/internal/metrics"
	"github.com/regkeeper/regkeeper/internal/output"
	"github.com/regkeeper/regkeeper/report"
	"github.com/regkeeper/regkeeper/retain"
)

// Exit codes of cycle's safety stops.
const (
	exitBackupFailed = 3
	exitVerifyFailed = 4
	exitGCFailed     = 5
)

func newCycleCmd(g *globalOptions) *cobra.Command {
	var (
		filter            filterOptions
		af                auditFlags
		mf                metricsFlag
		pf                problemsFlag
		config, root, dir string
		reportFile        string
		lockFile          string
		gcOpts            = gc.DefaultOptions()
		rf                cycleRetainFlags
		bopts             = backup.DefaultOptions()
	)
	cmd := &cobra.Command{
		Use:   "cycle REGISTRY (--config registry.yml | --root DIR) --backup DIR [--report FILE]",
		Short: "The weekly cron in one command: inventory, audit, backup, verify, then gc",
		Long: `cycle runs, in order: inventory of the registry, audit of its base images,
backup of every image into the OCI layout at --backup, verify of that backup,
and only then gc on the registry's storage (--config or --root). If the
backup or its verification fails, gc does not run: a tag that could not be
read is not backed up, so it stops gc. What is broken in the registry itself
(an index whose platform manifests are absent, a missing or unparseable
manifest: nothing there to back up) is listed under the steps and in the
report, and gc still runs.

The filters select what is audited and backed up; gc always works on the
whole storage, and only deletes what no tag reaches. A lock inside the backup
directory (DIR/.regkeeper/cycle.lock, or --lock-file) keeps two cycles from
overlapping; the kernel releases it when the process ends, however it ends. --report writes the HTML report
(what gc reclaimed, findings, lineage); --metrics-file the Prometheus metrics.

--retain-policy FILE adds a retain step after verify and before gc: the tags
the policy does not keep are removed (see regkeeper retain), journalled in
DIR/.regkeeper/, and gc collects what that leaves untagged. A refused plan
(--retain-max-remove, usage evidence not fresh) removes nothing, gc still
runs, and the cycle exits 1.

Exit codes: 0 every step succeeded (problems in the registry included,
unless --fail-on-problems); 1 an error, or parts of the registry could not
be read; 2 usage; 3 the backup failed, gc not run; 4 the backup did not
verify, gc not run; 5 gc failed.`,
		Example: `  # the weekly cron
  regkeeper cycle registry.example.com --config /etc/docker/registry/config.yml \
    --backup /backups/registry --report /var/www/registry-report.html \
    --metrics-file /var/lib/node_exporter/textfile/regkeeper.prom

  # against the demo registry (regkeeper demo --serve --dir /tmp/demo)
  regkeeper cycle 127.0.0.1:5000 --insecure --config /tmp/demo/config.yml --backup /tmp/demo-backup --grace 0`,
		Args: positional(argRegistry),
		RunE: func(cmd *cobra.Command, argv []string) error {
			if (config == "") == (root == "") {
				return usageError("give exactly one of --config or --root")
			}
			if dir == "" {
				return usageError("--backup DIR is required: gc runs only after a verified backup")
			}
			if err := checkGCOptions(gcOpts); err != nil {
				return err
			}
			ao, err := auditOptions(g, cmd, &filter, &af)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			log := ao.Inventory.Logger
			drv, err := openStorage(cmd, config, root)
			if err == nil {
				err = readGCSettings(config, &gcOpts)
			}
			if err != nil {
				return err
			}
			ropts, err := rf.options()
			if err != nil {
				return err
			}
			start := time.Now()
			gcOpts.Jobs, gcOpts.Logger, gcOpts.Progress = g.jobs, log, g.reporter(cmd)
			res, runErr := cycle.Run(ctx, cycle.Options{
				Host: argv[0], Storage: drv, BackupDir: dir, LockFile: lockFile,
				Inventory: ao.Inventory, Policy: ao.Policy,
				Backup: bopts, GC: gcOpts, Logger: log, Retain: ropts,
			})
			if res.Backup != nil {
				warnUnmatched(cmd, &filter, res.Backup.Selection)
			}
			if werr := writeCycle(cmd, g.format(), res); werr != nil && runErr == nil {
				runErr = werr
			}
			if reportFile != "" && res.Audit != nil {
				d := &report.Data{Registry: res.Audit.Registry, Generated: time.Now(), Inventory: res.Inventory, Audit: res.Audit, GC: res.GC}
				if res.Retain != nil {
					d.Retain = res.Retain.Plan
				}
				if werr := writeReportFile(reportFile, d); werr != nil && runErr == nil {
					runErr = werr
				}
			}
			// The error that decides the exit code also decides
			// regkeeper_cycle_success: 0 whenever the exit code is not 0.
			err = cycleExit(runErr)
			if err == nil {
				err = reportErrors(cmd, res.Errors)
			}
			if err == nil {
				// --fail-on-problems fails the run: the metrics say so too.
				err = pf.check(res.Problems)
			}
			set := metrics.New("cycle")
			cycleMetrics(set, res, time.Since(start))
			return mf.write(set, "cycle", err)
		},
	}
	filter.register(cmd)
	af.register(cmd)
	mf.register(cmd)
	pf.register(cmd)
	f := cmd.Flags()
	f.StringVar(&config, "config", "", "the registry's configuration file (its storage section is used by gc)")
	f.StringVar(&root, "root", "", "or a filesystem storage root")
	f.StringVar(&dir, "backup", "", "the OCI layout to back up into (required)")
	f.StringVar(&reportFile, "report", "", "write the HTML report here (atomically)")
	f.StringVar(&lockFile, "lock-file", "", "the lock that keeps two cycles from overlapping (default DIR/.regkeeper/cycle.lock, inside --backup)")
	f.BoolVar(&bopts.KeepHistory, "keep-history", false, "backup: keep the previous digest of a moved tag as repo:tag@<date>")
	f.BoolVar(&bopts.Referrers, "referrers", bopts.Referrers, "backup: also back up referrers listed by the referrers API")
	registerGCFlags(f, &gcOpts)
	rf.register(f)
	g.registerOutput(cmd)
	return cmd
}

// cycleExit maps the cycle's safety stops to their exit codes.
func cycleExit(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, cycle.ErrBackupFailed):
		return &exitCodeError{code: exitBackupFailed, err: err}
	case errors.Is(err, cycle.ErrVerifyFailed):
		return &exitCodeError{code: exitVerifyFailed, err: err}
	case errors.Is(err, cycle.ErrRetainFailed):
		return err // exit 1; gc ran
	case errors.Is(err, cycle.ErrGCFailed):
		return &exitCodeError{code: exitGCFailed, err: err}
	}
	return err
}

func writeCycle(cmd *cobra.Command, f output.Format, res *cycle.Result) error {
	out := cmd.OutOrStdout()
	if f == output.JSON {
		return output.WriteJSON(out, res)
	}
	rows := output.Rows{Header: []string{"STEP", "STATUS", "SECONDS", "WHAT IT FOUND"}}
	for _, st := range res.Steps {
		what := res.Summary(st.Name)
		if st.Status == "failed" || what == "" {
			what = st.Error
		}
		rows.Add(st.Name, st.Status, fmt.Sprintf("%.1f", st.DurationSeconds), what)
	}
	if err := output.Write(out, f, rows, res); err != nil {
		return err
	}
	return writeProblems(cmd, f, res.Problems)
}

func writeReportFile(path string, d *report.Data) error {
	var buf bytes.Buffer
	if err := d.WriteHTML(&buf); err != nil {
		return err
	}
	return writeFileAtomic(path, buf.Bytes())
}

// cycleRetainFlags are the retain step's flags (--policy is audit's in a
// cycle, hence --retain-policy).
type cycleRetainFlags struct {
	policy, maxRemove, usage string
	allowStale               bool
}

func (r *cycleRetainFlags) register(f *pflag.FlagSet) {
	f.StringVar(&r.policy, "retain-policy", "", "run retention with this policy after verify, before gc (see retain --policy)")
	f.StringVar(&r.maxRemove, "retain-max-remove", "", "retain: refuse a plan above N tags or P% (per run and per repository)")
	f.StringVar(&r.usage, "usage", "", "retain: the usage ledger, for pulledWithin, mostRecentlyPulled and inUse")
	f.BoolVar(&r.allowStale, "allow-stale-usage", false, "retain: remove even when the usage ledger is absent or stale")
}

// options returns the retain step's options, nil without --retain-policy.
func (r *cycleRetainFlags) options() (*retain.Options, error) {
	if r.policy == "" {
		if r.maxRemove != "" || r.usage != "" || r.allowStale {
			return nil, usageError("--retain-max-remove, --usage and --allow-stale-usage need --retain-policy")
		}
		return nil, nil
	}
	limit, err := retain.ParseCap(r.maxRemove)
	if err != nil {
		return nil, usageError("--retain-max-remove: %v", err)
	}
	pol, err := retain.Load(r.policy)
	if err != nil {
		return nil, usageError("%v", err)
	}
	pol.AllowStaleUsage = r.allowStale
	o := &retain.Options{Policy: pol, MaxRemove: limit}
	if r.usage != "" {
		if o.Evidence, err = openUsage(r.usage); err != nil {
			return nil, fmt.Errorf("opening the usage ledger %s: %w", r.usage, err)
		}
	}
	return o, nil
}
