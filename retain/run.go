package retain

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"

	"github.com/regkeeper/regkeeper/internal/client"
	"github.com/regkeeper/regkeeper/internal/walk"
)

// ErrUnread is a run in which some tags could not be read: nothing is
// removed, since what was not read may be what keeps a blob or a tag.
var ErrUnread = errors.New("some tags could not be read; nothing removed")

// Options for Run.
type Options struct {
	Client client.Options
	// Storage: see GatherOptions.Storage (nil: dates from image configs).
	Storage storagedriver.StorageDriver
	// Evidence is the usage ledger (nil: none).
	Evidence Evidence
	Policy   *Policy
	// DryRun plans and removes nothing.
	DryRun bool
	// MaxRemove refuses a plan above it (per run and per repository).
	MaxRemove Cap
	// Journal is where removed tags are recorded before any is removed
	// (required unless DryRun).
	Journal string
	// Now is the clock (default time.Now).
	Now    func() time.Time
	Logger *slog.Logger
}

// Result is a run: the plan and what was done. Its JSON field names are a
// contract (the README).
type Result struct {
	*Plan
	// Untagged is how many tags were removed (0 in a dry run).
	Untagged int `json:"untagged"`
	// Journal is the journal written ("" when nothing was removed).
	Journal string `json:"journal,omitempty"`
	// Errors are the repositories and tags that could not be read or
	// untagged.
	Errors []walk.Error `json:"errors"`
}

// Run plans retention on the registry at host and, unless DryRun, carries
// the plan out: cap, journal, untag. The result is returned with the
// errors ErrBlocked, ErrCapExceeded and ErrUnread (nothing removed) so a
// caller can show the plan that was refused.
func Run(ctx context.Context, host string, opts Options) (*Result, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Policy == nil {
		return nil, errors.New("retain: no policy")
	}
	if !opts.DryRun && opts.Journal == "" {
		return nil, errors.New("retain: a run that removes tags needs a journal")
	}
	w, err := walk.New(ctx, host, walk.Options{Client: opts.Client, Logger: opts.Logger})
	if err != nil {
		return nil, err
	}
	now := opts.Now()
	start := time.Now()
	facts, errs, err := Gather(ctx, w, GatherOptions{Storage: opts.Storage, Evidence: opts.Evidence, Policy: opts.Policy,
		Jobs: opts.Client.JobCount(), Now: now, Logger: opts.Logger})
	if err != nil {
		return nil, fmt.Errorf("reading the registry's tags: %w", err)
	}
	opts.Logger.Info("facts read", "repositories", len(facts.Repositories), "seconds", time.Since(start).Seconds())
	start = time.Now()
	plan := Apply(facts, opts.Policy, now)
	opts.Logger.Info("plan made", "tags", plan.Kept+plan.Removed, "seconds", time.Since(start).Seconds())
	plan.DryRun = opts.DryRun
	res := &Result{Plan: plan, Errors: errs}
	switch {
	case len(plan.Blocked) > 0:
		return res, fmt.Errorf("%w: %s", ErrBlocked, plan.Blocked[0])
	case len(errs) > 0:
		return res, ErrUnread
	}
	if err := opts.MaxRemove.Check(plan); err != nil {
		return res, err
	}
	if opts.DryRun || plan.Removed == 0 {
		return res, nil
	}
	if err := WriteJournal(opts.Journal, host, plan, now); err != nil {
		return res, err
	}
	res.Journal = opts.Journal
	n, uerrs, err := Untag(ctx, host, plan, RemoveOptions{Client: opts.Client, Logger: opts.Logger})
	res.Untagged = n
	res.Errors = append(res.Errors, uerrs...)
	if err != nil {
		return res, fmt.Errorf("removing tags: %w", err)
	}
	if len(uerrs) > 0 {
		return res, fmt.Errorf("%d tags could not be removed", len(uerrs))
	}
	return res, nil
}
