package main

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
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
	// exitCheckFailed: a check of the first step failed; nothing was done.
	exitCheckFailed = 6
)

func newCycleCmd(g *globalOptions) *cobra.Command {
	var (
		filter            filterOptions
		af                auditFlags
		mf                metricsFlag
		pf                problemsFlag
		config, root, dir string
		targetConfig      string
		reportFile        string
		lockFile          string
		checkOnly         bool
		restartCommand    string
		gcOpts            = gc.DefaultOptions()
		rf                cycleRetainFlags
		bopts             = backup.DefaultOptions()
	)
	cmd := &cobra.Command{
		Use:   "cycle REGISTRY (--config registry.yml | --root DIR) (--backup DIR|s3://BUCKET/PREFIX | --target-config FILE) [--report FILE]",
		Short: "The weekly cron in one command: inventory, audit, backup, verify, then gc",
		Long: `cycle runs, in order: inventory of the registry, audit of its base images,
backup of every image into the OCI layout at --backup, verify of that backup,
and only then gc on the registry's storage (--config or --root). If the
backup or its verification fails, gc does not run: a tag that could not be
read is not backed up, so it stops gc. What is broken in the registry itself
(an index whose platform manifests are absent, a missing or unparseable
manifest: nothing there to back up) is listed under the steps and in the
report, and gc still runs.

--backup takes what backup takes: a directory, s3://BUCKET/PREFIX
[?region=R&endpoint=URL] (credentials from AWS_ACCESS_KEY_ID/
AWS_SECRET_ACCESS_KEY, ~/.aws or the instance role), or, left out,
--target-config FILE (a registry-style storage: section: s3, azure, gcs).
Any other scheme (gs://, azure://, http://) is a usage error.

The filters select what is audited and backed up; gc always works on the
whole storage, and only deletes what no tag reaches. A lock keeps two cycles
from overlapping: an flock on DIR/.regkeeper/cycle.lock inside a local
backup, on $TMPDIR/regkeeper-cycle-<hash of the target>.lock for a backup on
object storage, or on --lock-file; the kernel releases it when the process
ends, however it ends. --report writes the HTML report (what gc reclaimed,
findings, lineage); --metrics-file the Prometheus metrics.

The first step checks, before any work, what the others need: the registry
answers and accepts the credentials; the storage is the registry's, readable
and writable; the registry's blob-descriptor cache allows gc (an in-memory
cache, as in distribution's example config, needs --restart-command, --offline
or --blob-cache-dropped); the restart command exists; the backup directory,
the lock file's, the metrics file's and the report's directories are writable
(a backup on object storage: opened, and a probe object written and deleted
in its .regkeeper/tmp/, so missing credentials or bucket fail here).
--check runs only that step and prints one line per check (ok, or FAIL with
what to do). --restart-command CMD (split on spaces, no shell) restarts the
registry right after gc deleted anything, so its in-memory cache forgets
what gc deleted.

--retain-policy FILE adds a retain step after verify and before gc: the tags
the policy does not keep are removed (see regkeeper retain), journalled in
DIR/.regkeeper/ (next to the lock for a backup on object storage), and gc collects what that leaves untagged. A refused plan
(--retain-max-remove, usage evidence not fresh) removes nothing, gc still
runs, and the cycle exits 1.

Exit codes: 0 every step succeeded (problems in the registry included,
unless --fail-on-problems); 1 an error, or parts of the registry could not
be read; 2 usage; 3 the backup failed, gc not run; 4 the backup did not
verify, gc not run; 5 gc failed (or the restart after it); 6 a check failed,
nothing done.`,
		Example: `  # the weekly cron
  regkeeper cycle registry.example.com --config /etc/docker/registry/config.yml \
    --backup /backups/registry --report /var/www/registry-report.html \
    --metrics-file /var/lib/node_exporter/textfile/regkeeper.prom

  # check everything before the first run (exit 6 and what to do if not)
  regkeeper cycle registry.example.com --config /etc/docker/registry/config.yml \
    --backup /backups/registry --restart-command 'systemctl restart docker-registry.service' --check

  # backing up to S3 (keys from the environment or the instance role); the
  # lock, and the retain journal beside it, in a lasting local directory
  regkeeper cycle registry.example.com --config /etc/docker/registry/config.yml \
    --backup 's3://acme-backups/registry?region=eu-west-1' --lock-file /var/lib/regkeeper/cycle.lock

  # against the demo registry (regkeeper demo --serve --dir /tmp/demo)
  regkeeper cycle 127.0.0.1:5000 --insecure --config /tmp/demo/config.yml --backup /tmp/demo-backup --grace 0`,
		Args: positional(argRegistry),
		RunE: func(cmd *cobra.Command, argv []string) error {
			if (config == "") == (root == "") {
				return usageError("give exactly one of --config or --root")
			}
			switch {
			case dir == "" && targetConfig == "":
				return usageError("--backup DIR (or --target-config FILE) is required: gc runs only after a verified backup")
			case dir != "" && targetConfig != "":
				return usageError("give --backup or --target-config, not both")
			}
			if err := checkGCOptions(gcOpts); err != nil {
				return err
			}
			guardDefaults(cmd, &gcOpts)
			ao, err := auditOptions(g, cmd, &filter, &af)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			log := ao.Inventory.Logger
			if targetConfig != "" {
				dir = targetConfig
			}
			target, err := openTarget(cmd, dir, targetConfig)
			if err != nil {
				return err
			}
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
			defer rf.close()
			start := time.Now()
			gcOpts.Jobs, gcOpts.Logger, gcOpts.Progress = g.jobs, log, g.reporter(cmd)
			restart := strings.Fields(restartCommand)
			if len(restart) > 0 {
				gcOpts.RestartAfter = true
			}
			var outputs []cycle.Output
			if mf.path != "" {
				outputs = append(outputs, cycle.Output{Name: "metrics-file", Path: mf.path})
			}
			if reportFile != "" {
				outputs = append(outputs, cycle.Output{Name: "report", Path: reportFile})
			}
			copts := cycle.Options{
				Host: argv[0], Storage: drv, Target: target, LockFile: lockFile,
				Inventory: ao.Inventory, Policy: ao.Policy,
				Backup: bopts, GC: gcOpts, Logger: log, Retain: ropts,
				Outputs: outputs, RestartCommand: restart,
			}
			if checkOnly {
				checks, err := cycle.RunChecks(ctx, copts)
				if werr := writeChecks(cmd, g.format(), checks); werr != nil && err == nil {
					err = werr
				}
				return cycleExit(err)
			}
			res, runErr := cycle.Run(ctx, copts)
			if res.Backup != nil {
				if res.Audit != nil {
					// the audit's JSON and metrics count it; said once
					res.Audit.Warnings = append(filterWarnings(&filter, res.Backup.Selection), res.Audit.Warnings...)
				} else {
					warnUnmatched(cmd, &filter, res.Backup.Selection)
				}
			}
			if res.Audit != nil {
				warnAudit(cmd, res.Audit)
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
	f.StringVar(&dir, "backup", "", "the OCI layout to back up into: a directory or s3://BUCKET/PREFIX[?region=R&endpoint=URL], as backup takes (this or --target-config is required)")
	f.StringVar(&targetConfig, "target-config", "", "back up into the storage of this YAML file's storage: section (as in the registry's config: s3, azure, gcs, filesystem), in place of --backup")
	f.StringVar(&reportFile, "report", "", "write the HTML report here (atomically)")
	f.BoolVar(&checkOnly, "check", false, "only check, before any work, what the cycle needs (registry, credentials, storage, gc mode, writable paths): one line per check, exit 6 if one fails")
	f.StringVar(&restartCommand, "restart-command", "", "restart the registry with this command (split on spaces, no shell) right after gc deleted anything: what an in-memory blob-descriptor cache needs")
	f.StringVar(&lockFile, "lock-file", "", "the lock that keeps two cycles from overlapping (default DIR/.regkeeper/cycle.lock inside a local --backup; for object storage $TMPDIR/regkeeper-cycle-<hash of the target>.lock); the retain journal of an object-storage backup goes next to it")
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
	case errors.Is(err, cycle.ErrCheckFailed):
		return &exitCodeError{code: exitCheckFailed, err: err}
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
			// One line per step, an error cut short: the whole error is
			// on stderr and in the JSON.
			what = cycle.OneLine(st.Error, 160)
		}
		rows.Add(st.Name, st.Status, fmt.Sprintf("%.1f", st.DurationSeconds), cycle.OneLine(what, 0))
	}
	if err := output.Write(out, f, rows, res); err != nil {
		return err
	}
	if st := res.Step(cycle.StepCheck); st != nil && st.Status == "failed" && len(res.Checks) > 0 {
		fmt.Fprintln(out)
		if err := writeChecks(cmd, f, res.Checks); err != nil {
			return err
		}
	}
	return writeProblems(cmd, f, res.Problems)
}

// writeChecks prints one line per check: ok, or FAIL with what to do.
func writeChecks(cmd *cobra.Command, f output.Format, checks []cycle.Check) error {
	out := cmd.OutOrStdout()
	if f == output.JSON {
		return output.WriteJSON(out, struct {
			Checks []cycle.Check `json:"checks"`
		}{checks})
	}
	rows := output.Rows{Header: []string{"CHECK", "STATUS", "WHAT"}}
	for _, c := range checks {
		status, what := "ok", c.Detail
		if !c.OK() {
			status, what = "FAIL", c.Detail+" — "+c.Fix
		}
		rows.Add(c.Name, status, cycle.OneLine(what, 0))
	}
	return output.Write(out, f, rows, checks)
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
	closeLedger              func()
}

func (r *cycleRetainFlags) register(f *pflag.FlagSet) {
	f.StringVar(&r.policy, "retain-policy", "", "run retention with this policy after verify, before gc (see retain --policy)")
	f.StringVar(&r.maxRemove, "retain-max-remove", "", "retain: refuse a plan above N tags or P% (per run and per repository)")
	f.StringVar(&r.usage, "usage", "", "retain: the usage ledger, for pulledWithin, mostRecentlyPulled and inUse")
	f.BoolVar(&r.allowStale, "allow-stale-usage", false, "retain: remove even when the usage ledger is absent or stale")
}

// options returns the retain step's options, nil without --retain-policy.
// close releases the usage ledger, when one was opened.
func (r *cycleRetainFlags) close() {
	if r.closeLedger != nil {
		r.closeLedger()
	}
}

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
		if o.Evidence, r.closeLedger, err = openEvidence(r.usage); err != nil {
			return nil, fmt.Errorf("opening the usage ledger %s: %w", r.usage, err)
		}
	}
	return o, nil
}
