// Package cycle runs the weekly cron of a registry in one call, safe by
// construction: inventory, audit, backup of every image, verify of that
// backup, and only then gc on the registry's storage. If the backup or its
// verification fails, gc does not run.
package cycle

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"

	"github.com/regkeeper/regkeeper/audit"
	"github.com/regkeeper/regkeeper/backup"
	"github.com/regkeeper/regkeeper/gc"
	"github.com/regkeeper/regkeeper/internal/walk"
	"github.com/regkeeper/regkeeper/inventory"
	"github.com/regkeeper/regkeeper/retain"
)

// Step names, in order.
const (
	StepInventory = "inventory"
	StepAudit     = "audit"
	StepBackup    = "backup"
	StepVerify    = "verify"
	StepGC        = "gc"
	// StepRetain runs between verify and gc when Options.Retain is set;
	// it is not in Steps (a cycle without a retention policy has no such
	// step).
	StepRetain = "retain"
)

// Steps lists the steps in the order they run. The first, StepCheck
// (check.go), does no work: it checks what the others will need.
var Steps = []string{StepCheck, StepInventory, StepAudit, StepBackup, StepVerify, StepGC}

// Errors that say which safety stop a cycle made; the command maps them to
// exit codes.
var (
	ErrBackupFailed = errors.New("backup failed; gc was not run")
	ErrVerifyFailed = errors.New("the backup did not verify; gc was not run")
	ErrGCFailed     = errors.New("gc failed")
	// ErrRetainFailed: retention refused its plan or could not carry it
	// out; gc still ran (it only collects what no tag reaches).
	ErrRetainFailed = errors.New("retain failed")
	ErrLocked       = errors.New("another cycle is running")
)

// Options for Run.
type Options struct {
	// Host is the registry to walk and back up.
	Host string
	// Storage is the registry's storage (gc.Open of its config file).
	Storage storagedriver.StorageDriver
	// BackupDir is the local directory of the OCI layout the backup goes
	// to, when Target is not set.
	BackupDir string
	// Target is the backup's layout as backup.OpenTarget opened it (a
	// local directory, an s3:// URL, a --target-config storage); it wins
	// over BackupDir. Its String names it in messages.
	Target backup.Layout
	// LockFile is the file the cycle holds (flock) while it runs; empty
	// means DefaultLockFile: inside a local backup directory, the one
	// place a cycle must be able to write anyway (a systemd unit's
	// ReadWritePaths, a Kubernetes volume); for a backup on object storage,
	// in os.TempDir(), named after the target.
	LockFile string
	// Inventory says how to reach the registry; its filters select what is
	// audited and backed up (gc always works on the whole storage).
	Inventory inventory.Options
	Policy    audit.Policy
	Backup    backup.Options
	GC        gc.Options
	// Retain, when set, runs retention after the backup verified and
	// before gc, on Host with Storage; its Journal defaults to
	// JournalDir(opts)/retain-<time>.jsonl.
	Retain *retain.Options
	Logger *slog.Logger
	// Now is the reference time for audit ages; zero means time.Now.
	Now time.Time
	// Outputs are the files the command writes after the steps (metrics,
	// report): the check step checks that their directories are writable.
	Outputs []Output
	// RestartCommand, when set, is run (no shell) right after gc deleted
	// anything, to restart the registry: its in-memory blob-descriptor
	// cache still names what gc deleted (Options.GC.RestartAfter).
	RestartCommand []string
}

// Step is how one step went.
type Step struct {
	Name   string `json:"name"`
	Status string `json:"status"` // ok, partial (ran, some parts failed), failed, skipped
	// Error says why a step failed, was partial, or was skipped.
	Error           string  `json:"error,omitempty"`
	DurationSeconds float64 `json:"durationSeconds"`
}

// Result is what each step found.
type Result struct {
	Steps []Step `json:"steps"`
	// Checks are what the check step found, one per check.
	Checks []Check `json:"checks"`
	// Restart is the registry's restart after gc (RestartCommand).
	Restart *Restart             `json:"restart,omitempty"`
	Audit   *audit.Result        `json:"audit,omitempty"`
	Backup  *backup.Result       `json:"backup,omitempty"`
	Verify  *backup.VerifyResult `json:"verify,omitempty"`
	GC      *gc.Report           `json:"gc,omitempty"`
	Retain  *retain.Result       `json:"retain,omitempty"`
	// Inventory is the walk of the whole registry; not in the JSON (the
	// audit has every image).
	Inventory *inventory.Result `json:"-"`
	// Problems are what is broken in the registry (internal/walk), of what
	// the filters select: reported, not a reason to skip gc.
	Problems []walk.Problem `json:"problems"`
	// Errors are the parts of the registry that could not be read, of
	// those the filters select.
	Errors []inventory.Error `json:"errors"`
}

// Step returns the step called name (nil for an unknown name).
func (r *Result) Step(name string) *Step {
	for i := range r.Steps {
		if r.Steps[i].Name == name {
			return &r.Steps[i]
		}
	}
	return nil
}

// Run runs the cycle. The returned error is nil only when every step ran
// and succeeded (parts of the inventory that could not be read make the
// inventory step "partial" and are in Errors, without stopping the cycle).
func Run(ctx context.Context, opts Options) (*Result, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	res := &Result{Problems: []walk.Problem{}, Errors: []inventory.Error{}, Checks: []Check{}}
	for _, name := range Steps {
		if name == StepGC && opts.Retain != nil {
			res.Steps = append(res.Steps, Step{Name: StepRetain, Status: "skipped"})
		}
		res.Steps = append(res.Steps, Step{Name: name, Status: "skipped"})
	}

	target := opts.layout()
	lockFile := opts.LockFile
	if lockFile == "" && target.Driver() == nil {
		// The lock lives in the layout's private directory: make the
		// layout first (or refuse a directory that is not one, touching
		// nothing), as the backup would.
		if err := target.Init(); err != nil {
			st := res.Step(StepBackup)
			st.Status, st.Error = "failed", err.Error()
			return res, fmt.Errorf("%w: %v", ErrBackupFailed, err)
		}
	}
	if lockFile == "" {
		lockFile = DefaultLockFile(target)
	}
	unlock, err := lock(lockFile)
	if err != nil {
		return res, err
	}
	defer unlock()

	// 0. Check everything that can be checked before any work.
	if err := res.runStep(ctx, log, StepCheck, func() (string, error) {
		checks, err := RunChecks(ctx, opts)
		res.Checks = checks
		for _, c := range checks {
			if !c.OK() {
				log.Error("cycle check failed", "check", c.Name, "error", c.Detail, "fix", c.Fix)
			}
		}
		return "", err
	}); err != nil {
		return res, err
	}

	run := func(name string, fn func() (partial string, err error)) error {
		return res.runStep(ctx, log, name, fn)
	}

	// 1. Inventory of the whole registry (the audit's lineage needs it).
	all := opts.Inventory
	all.Repo, all.Tag = nil, nil
	if err := run(StepInventory, func() (string, error) {
		inv, err := inventory.Run(ctx, opts.Host, all)
		if err != nil {
			return "", err
		}
		res.Inventory = inv
		if len(inv.Errors) > 0 {
			return fmt.Sprintf("%d repositories or tags could not be read: %s", len(inv.Errors), whereList(inv.Errors)), nil
		}
		return "", nil
	}); err != nil {
		return res, err
	}

	// 2. Audit.
	if err := run(StepAudit, func() (string, error) {
		a, err := audit.RunOn(ctx, opts.Host, res.Inventory, audit.Options{Inventory: opts.Inventory, Policy: opts.Policy, Now: opts.Now})
		if err != nil {
			return "", err
		}
		res.Audit, res.Errors, res.Problems = a, a.Errors, a.Problems
		return "", nil
	}); err != nil {
		return res, err
	}

	// 3. Backup; any failure stops the cycle before gc. What is broken in
	// the registry (nothing there to back up) does not: it is reported.
	bopts := opts.Backup
	bopts.Client, bopts.Repo, bopts.Tag = opts.Inventory.Client, opts.Inventory.Repo, opts.Inventory.Tag
	if bopts.Logger == nil {
		bopts.Logger = log
	}
	if bopts.Progress == nil {
		bopts.Progress = opts.Inventory.Progress
	}
	if err := run(StepBackup, func() (string, error) {
		b, err := backup.RunLayout(ctx, opts.Host, target, bopts)
		res.Backup = b
		if err != nil {
			return "", err
		}
		res.Problems = mergeProblems(res.Problems, b.Problems)
		if len(b.Errors) > 0 {
			return "", fmt.Errorf("%d images could not be backed up (first: %s)", len(b.Errors), b.Errors[0].Error)
		}
		return "", nil
	}); err != nil {
		return res, fmt.Errorf("%w: %v", ErrBackupFailed, err)
	}

	// 4. Verify the backup.
	if err := run(StepVerify, func() (string, error) {
		v, err := backup.VerifyLayout(ctx, target, backup.VerifyOptions{Jobs: opts.Inventory.Client.JobCount(), Progress: opts.Inventory.Progress})
		res.Verify = v
		if err != nil {
			return "", err
		}
		if !v.OK() {
			p := v.Problems[0]
			return "", fmt.Errorf("%d problems (first: blob %s %s %s)", len(v.Problems), p.Blob, p.Problem, p.Detail)
		}
		return "", nil
	}); err != nil {
		return res, fmt.Errorf("%w: %v", ErrVerifyFailed, err)
	}

	// 5. Retention, with the backup verified: what it untags is in the
	// backup, and gc below collects it.
	retainErr := runRetain(ctx, opts, res, run)

	// 6. GC, only now.
	if err := run(StepGC, func() (string, error) {
		rep, err := gc.Run(ctx, opts.Storage, opts.GC)
		res.GC = rep
		if len(opts.RestartCommand) > 0 && !opts.GC.DryRun && touched(err) {
			res.Restart = restart(ctx, log, opts.RestartCommand)
			if res.Restart.Error != "" && err == nil {
				err = fmt.Errorf("restarting the registry after gc: %s", res.Restart.Error)
			}
		}
		return "", err
	}); err != nil {
		return res, fmt.Errorf("%w: %v", ErrGCFailed, err)
	}
	return res, retainErr
}

// runRetain is the retain step, when there is a retention policy.
func runRetain(ctx context.Context, opts Options, res *Result, run func(string, func() (string, error)) error) error {
	if opts.Retain == nil {
		return nil
	}
	ro := *opts.Retain
	if ro.Storage == nil {
		ro.Storage = opts.Storage
	}
	ro.Client = opts.Inventory.Client
	if ro.Logger == nil {
		ro.Logger = opts.Logger
	}
	if ro.Journal == "" {
		ro.Journal = filepath.Join(JournalDir(opts), "retain-"+time.Now().UTC().Format("20060102T150405Z")+".jsonl")
	}
	err := run(StepRetain, func() (string, error) {
		r, err := retain.Run(ctx, opts.Host, ro)
		res.Retain = r
		return "", err
	})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRetainFailed, err)
	}
	return nil
}

// runStep runs the step called name and records how it went.
func (res *Result) runStep(ctx context.Context, log *slog.Logger, name string, fn func() (partial string, err error)) error {
	st := res.Step(name)
	start := time.Now()
	log.Info("cycle step", "step", name)
	partial, err := fn()
	st.DurationSeconds = time.Since(start).Seconds()
	switch {
	case err != nil && ctx.Err() != nil:
		// An interrupt, not the step's own failure: say so, and
		// where, instead of "context canceled".
		st.Status, st.Error = "failed", interruptedDuring(ctx, name)
	case err != nil:
		st.Status, st.Error = "failed", err.Error()
	case partial != "":
		st.Status, st.Error = "partial", partial
	default:
		st.Status = "ok"
	}
	return err
}

// interruptedDuring says that ctx was cancelled during step: "interrupted
// (SIGINT) during backup" when the cause names the signal.
func interruptedDuring(ctx context.Context, step string) string {
	what := "interrupted"
	if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) && !errors.Is(c, context.DeadlineExceeded) {
		what = c.Error()
		if !strings.HasPrefix(what, "interrupted") {
			what = "interrupted (" + what + ")"
		}
	} else if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		what = "timed out"
	}
	return what + " during " + step
}

// whereList names the repositories and tags of errs, the first few.
func whereList(errs []inventory.Error) string {
	const most = 5
	var names []string
	for i, e := range errs {
		if i == most {
			names = append(names, fmt.Sprintf("and %d more", len(errs)-most))
			break
		}
		names = append(names, e.Where())
	}
	return strings.Join(names, ", ")
}

// mergeProblems adds to ps those of more that it does not have (the same
// repository, tag and kind), sorted.
func mergeProblems(ps, more []walk.Problem) []walk.Problem {
	type key struct{ repo, tag, kind string }
	seen := map[key]bool{}
	for _, p := range ps {
		seen[key{p.Repository, p.Tag, p.Kind}] = true
	}
	for _, p := range more {
		if k := (key{p.Repository, p.Tag, p.Kind}); !seen[k] {
			seen[k] = true
			ps = append(ps, p)
		}
	}
	walk.SortProblems(ps)
	return ps
}

// layout is the backup's layout: Target, or the directory BackupDir.
func (opts Options) layout() backup.Layout {
	if opts.Target.Root != "" {
		return opts.Target
	}
	return backup.Layout{Root: opts.BackupDir}
}

// DefaultLockFile is where a cycle backing up into l holds its lock when
// no lock file is given: for a local directory, DIR/.regkeeper/cycle.lock,
// beside the backup's own lock; for object storage (an flock needs a local
// file), os.TempDir()/regkeeper-cycle-<hash of the target's name>.lock, so
// that every cycle on this machine backing up to one target takes the same
// lock. (Cycles on other machines are kept out of the backup by its own
// lock object, .regkeeper/lock in the target.)
func DefaultLockFile(l backup.Layout) string {
	if l.Driver() == nil {
		return filepath.Join(l.PrivateDir(), "cycle.lock")
	}
	sum := sha256.Sum256([]byte(l.String()))
	return filepath.Join(os.TempDir(), "regkeeper-cycle-"+hex.EncodeToString(sum[:6])+".lock")
}

// JournalDir is the directory of the retain step's journal when
// Retain.Journal is not set: the backup's private directory
// (DIR/.regkeeper) for a local backup; next to the lock file for a backup
// on object storage (the journal is a local file, read by retain --undo).
func JournalDir(opts Options) string {
	l := opts.layout()
	if l.Driver() == nil {
		return l.PrivateDir()
	}
	lock := opts.LockFile
	if lock == "" {
		lock = DefaultLockFile(l)
	}
	return filepath.Dir(lock)
}

// lock takes an exclusive flock on path, so that two cycles never overlap.
// The kernel releases it when the process dies, so it never goes stale; the
// file stays, holding the PID of the last cycle that took it.
func lock(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cycle lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w (lock %s)", ErrLocked, path)
		}
		return nil, fmt.Errorf("cycle lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		fmt.Fprintf(f, "%d\n", os.Getpid())
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
