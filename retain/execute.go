package retain

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"golang.org/x/sync/errgroup"

	"github.com/regkeeper/regkeeper/internal/client"
	"github.com/regkeeper/regkeeper/internal/walk"
)

// ErrCapExceeded is a plan that removes more than --max-remove allows.
var ErrCapExceeded = errors.New("the plan removes more than --max-remove allows")

// ErrBlocked is a plan that may not be carried out (see Plan.Blocked).
var ErrBlocked = errors.New("retention needs usage evidence it could not read fresh enough")

// Cap bounds what one run removes, per run and per repository: N tags, or
// Percent of the tags in scope. The zero value bounds nothing.
type Cap struct {
	N       int
	Percent float64
	Text    string
}

// ParseCap reads "N" or "P%".
func ParseCap(s string) (Cap, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Cap{}, nil
	}
	if p, ok := strings.CutSuffix(s, "%"); ok {
		v, err := strconv.ParseFloat(p, 64)
		if err != nil || v < 0 || v > 100 {
			return Cap{}, fmt.Errorf("%q: want a count (50) or a percentage (10%%)", s)
		}
		return Cap{Percent: v, Text: s}, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return Cap{}, fmt.Errorf("%q: want a count (50) or a percentage (10%%)", s)
	}
	return Cap{N: n, Text: s}, nil
}

func (c Cap) allows(removed, total int) bool {
	if c.Text == "" {
		return true
	}
	if c.Percent > 0 || c.N == 0 && strings.HasSuffix(c.Text, "%") {
		return float64(removed) <= c.Percent/100*float64(total)
	}
	return removed <= c.N
}

// Check refuses a plan above the cap, naming the run or each repository
// that is above it.
func (c Cap) Check(p *Plan) error {
	var over []string
	if !c.allows(p.Removed, p.Kept+p.Removed) {
		over = append(over, fmt.Sprintf("the run removes %d of %d tags", p.Removed, p.Kept+p.Removed))
	}
	for _, r := range p.Repositories {
		if !c.allows(r.Removed, r.Kept+r.Removed) {
			over = append(over, fmt.Sprintf("%s: %d of %d tags", r.Repository, r.Removed, r.Kept+r.Removed))
		}
	}
	if len(over) == 0 {
		return nil
	}
	return fmt.Errorf("%w (%s): %s; nothing removed", ErrCapExceeded, c.Text, strings.Join(over, ", "))
}

// JournalEntry is one removed tag, as the journal records it (JSON lines,
// after a header line).
type JournalEntry struct {
	Repository string `json:"repository"`
	Tag        string `json:"tag"`
	Digest     string `json:"digest"`
}

// JournalHeader is the journal's first line.
type JournalHeader struct {
	Kind     string    `json:"kind"` // "regkeeper-retain-journal"
	Registry string    `json:"registry"`
	Time     time.Time `json:"time"`
	Tags     int       `json:"tags"`
}

const journalKind = "regkeeper-retain-journal"

// WriteJournal writes every tag the plan removes to path, before anything
// is removed: a temporary file in the same directory, synced, renamed,
// and the directory synced. An existing file is not overwritten.
func WriteJournal(path, registry string, p *Plan, now time.Time) error {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("writing journal: %s exists (a journal of an earlier run?); give another --journal", path)
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".retain-journal-*")
	if err != nil {
		return fmt.Errorf("writing journal: %w", err)
	}
	defer os.Remove(f.Name())
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	err = enc.Encode(JournalHeader{Kind: journalKind, Registry: registry, Time: now.UTC(), Tags: p.Removed})
	for _, t := range p.Tags {
		if err == nil && t.Action == Remove {
			err = enc.Encode(JournalEntry{Repository: t.Repository, Tag: t.Tag, Digest: t.Digest})
		}
	}
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("writing journal %s: %w", path, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// ReadJournal reads a journal WriteJournal wrote.
func ReadJournal(path string) (JournalHeader, []JournalEntry, error) {
	var h JournalHeader
	f, err := os.Open(path)
	if err != nil {
		return h, nil, fmt.Errorf("reading journal: %w", err)
	}
	defer f.Close()
	dec := json.NewDecoder(f)
	if err := dec.Decode(&h); err != nil || h.Kind != journalKind {
		return h, nil, fmt.Errorf("reading journal %s: not a retain journal", path)
	}
	var out []JournalEntry
	for dec.More() {
		var e JournalEntry
		if err := dec.Decode(&e); err != nil {
			return h, nil, fmt.Errorf("reading journal %s: %w", path, err)
		}
		out = append(out, e)
	}
	return h, out, nil
}

// RemoveOptions for Untag and Undo.
type RemoveOptions struct {
	Client client.Options
	Logger *slog.Logger
}

// Untag untags every tag the plan removes, through the registry API
// (DELETE /v2/<name>/manifests/<tag>, which removes the tag and never the
// manifest). A tag that names another digest than the plan's by now (pushed
// again since) is left alone and said. It returns how many it removed and
// the tags it could not.
func Untag(ctx context.Context, host string, p *Plan, opts RemoveOptions) (int, []walk.Error, error) {
	reg, err := opts.Client.Registry(host)
	if err != nil {
		return 0, nil, err
	}
	ropts := opts.Client.Remote(ctx)
	var mu sync.Mutex
	var errs []walk.Error
	removed := 0
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opts.Client.JobCount())
	for _, t := range p.Tags {
		if t.Action != Remove {
			continue
		}
		g.Go(func() error {
			ref := reg.Repo(t.Repository).Tag(t.Tag)
			fail := func(msg string) {
				mu.Lock()
				errs = append(errs, walk.Error{Repository: t.Repository, Tag: t.Tag, Error: msg})
				mu.Unlock()
			}
			d, err := remote.Head(ref, ropts...)
			if err != nil {
				if notFound(err) {
					return nil // untagged since the plan
				}
				fail("checking the tag before removing it: " + client.Describe(err))
				return gctx.Err()
			}
			if d.Digest.String() != t.Digest {
				fail(fmt.Sprintf("pushed again since the plan (%s, the plan had %s): left alone", d.Digest, t.Digest))
				return nil
			}
			if err := remote.Delete(ref, ropts...); err != nil && !notFound(err) {
				if deleteDisabled(err) {
					// Every other tag would fail the same way: stop.
					return ErrDeleteDisabled
				}
				fail("removing the tag: " + client.Describe(err))
				return gctx.Err()
			}
			mu.Lock()
			removed++
			mu.Unlock()
			return nil
		})
	}
	err = g.Wait()
	walk.SortErrors(errs)
	return removed, errs, err
}

// UndoResult is what Undo did, per journal entry.
type UndoResult struct {
	Restored []JournalEntry `json:"restored"`
	// NotRestored: entries whose manifest is gone (collected by gc; a
	// restore from the backup brings it back) or whose tag now names
	// another digest.
	NotRestored []UndoFailure `json:"notRestored"`
}

// UndoFailure is a journal entry Undo could not tag again, and why.
type UndoFailure struct {
	JournalEntry
	Reason string `json:"reason"`
}

// Undo tags every entry of a journal again while its manifest exists in
// its repository. A tag that exists already on the same digest counts as
// restored; on another digest it is left alone.
func Undo(ctx context.Context, host string, entries []JournalEntry, opts RemoveOptions) (*UndoResult, error) {
	reg, err := opts.Client.Registry(host)
	if err != nil {
		return nil, err
	}
	ropts := opts.Client.Remote(ctx)
	res := &UndoResult{Restored: []JournalEntry{}, NotRestored: []UndoFailure{}}
	var mu sync.Mutex
	g, _ := errgroup.WithContext(ctx)
	g.SetLimit(opts.Client.JobCount())
	for _, e := range entries {
		g.Go(func() error {
			why := undoOne(reg, e, ropts)
			mu.Lock()
			if why == "" {
				res.Restored = append(res.Restored, e)
			} else {
				res.NotRestored = append(res.NotRestored, UndoFailure{e, why})
			}
			mu.Unlock()
			return nil
		})
	}
	_ = g.Wait()
	if err := ctx.Err(); err != nil {
		return res, err
	}
	less := func(a, b JournalEntry) bool {
		return a.Repository < b.Repository || a.Repository == b.Repository && a.Tag < b.Tag
	}
	sort.Slice(res.Restored, func(i, j int) bool { return less(res.Restored[i], res.Restored[j]) })
	sort.Slice(res.NotRestored, func(i, j int) bool { return less(res.NotRestored[i].JournalEntry, res.NotRestored[j].JournalEntry) })
	return res, nil
}

func undoOne(reg name.Registry, e JournalEntry, ropts []remote.Option) string {
	repo := reg.Repo(e.Repository)
	if d, err := remote.Head(repo.Tag(e.Tag), ropts...); err == nil {
		if d.Digest.String() == e.Digest {
			return ""
		}
		return fmt.Sprintf("the tag names %s now; left alone", d.Digest)
	}
	desc, err := remote.Get(repo.Digest(e.Digest), ropts...)
	if notFound(err) {
		return "manifest " + e.Digest + " is gone from " + e.Repository + " (collected by gc? restore it from the backup, then undo again)"
	}
	if err != nil {
		return "reading manifest " + e.Digest + ": " + client.Describe(err)
	}
	if err := remote.Tag(repo.Tag(e.Tag), desc, ropts...); err != nil {
		return "tagging again: " + client.Describe(err)
	}
	return ""
}

// ErrDeleteDisabled: the registry refuses DELETE (distribution's default:
// storage.delete.enabled is false), so no tag can be removed.
var ErrDeleteDisabled = errors.New("the registry refuses deletes (UNSUPPORTED): enable them with storage.delete.enabled: true in its config (or REGISTRY_STORAGE_DELETE_ENABLED=true) and restart it; the journal puts back any tag already removed")

// deleteDisabled tells a registry that has deletes switched off: 405 with
// the UNSUPPORTED code, as distribution answers.
func deleteDisabled(err error) bool {
	var terr *transport.Error
	if !errors.As(err, &terr) {
		return false
	}
	if terr.StatusCode == http.StatusMethodNotAllowed {
		return true
	}
	for _, d := range terr.Errors {
		if d.Code == transport.UnsupportedErrorCode {
			return true
		}
	}
	return false
}
