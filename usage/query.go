package usage

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// tagView reads a tag's record and that of the digest it points to: dgst
// when given (the caller read the registry), else the last the ledger saw.
func tagView(tx *bolt.Tx, repo, tag, dgst string) (*tagRecord, *digestRecord, error) {
	t, err := get[tagRecord](tx.Bucket(bTags), key(repo, tag))
	if err != nil {
		return nil, nil, err
	}
	if dgst == "" {
		dgst = t.Digest
	}
	d := &digestRecord{}
	if dgst != "" {
		if d, err = get[digestRecord](tx.Bucket(bDigests), key(repo, dgst)); err != nil {
			return nil, nil, err
		}
	}
	return t, d, nil
}

// LastPull returns the last pull (GET of the manifest; HEADs are not pulls)
// credited to repo:tag: by tag, or by digest of the manifest the tag points
// to, or of a child of its index. Requests by regkeeper and by the ignored
// user agents and accounts are not pulls.
//
// known is true when last >= since, or when the ledger was listening
// without a gap over all of [since, now]; otherwise (no data, started
// listening after since, or a gap) known is false: "unknown", never "not
// pulled". A zero last with known true means "not pulled since since".
func (l *Ledger) LastPull(repo, tag string, since time.Time) (last time.Time, known bool, err error) {
	return l.lastPull(repo, tag, "", since)
}

func (l *Ledger) lastPull(repo, tag, dgst string, since time.Time) (last time.Time, known bool, err error) {
	now := l.opts.now()
	err = l.db.View(func(tx *bolt.Tx) error {
		t, d, err := tagView(tx, repo, tag, dgst)
		if err != nil {
			return err
		}
		last = maxTime(t.LastPull, d.LastPull)
		if !last.IsZero() && !last.Before(since) {
			known = true
			return nil
		}
		known, err = coveredSince(tx, since, now)
		return err
	})
	if err != nil {
		return time.Time{}, false, fmt.Errorf("reading last pull of %s:%s from ledger: %w", repo, tag, err)
	}
	return last, known, nil
}

// Pulls returns the pulls credited to repo:tag on the UTC days from since's
// day to now (by tag and by digest, as LastPull), and whether the ledger
// covers [since, now] without a gap (when not, the count is a lower bound).
// since must be within the window of pulls per day the ledger keeps.
func (l *Ledger) Pulls(repo, tag string, since time.Time) (n int64, known bool, err error) {
	return l.pulls(repo, tag, "", since)
}

func (l *Ledger) pulls(repo, tag, dgst string, since time.Time) (n int64, known bool, err error) {
	now := l.opts.now()
	err = l.db.View(func(tx *bolt.Tx) error {
		t, d, err := tagView(tx, repo, tag, dgst)
		if err != nil {
			return err
		}
		n = t.since(since) + d.since(since)
		known, err = coveredSince(tx, since, now)
		return err
	})
	if err != nil {
		return 0, false, fmt.Errorf("reading pulls of %s:%s from ledger: %w", repo, tag, err)
	}
	return n, known, nil
}

// InUse says whether the latest in-use evidence of any source (each
// cluster's last `usage kube`, each --from file) says repo:tag or
// repo@digest is running or kept for rollback, and where ("cluster prod:
// Deployment shop/web"). An image recorded by the digest of an index's
// child matches the index's digest too. Images are matched on the
// repository path without the registry host, so the name a cluster pulls
// by does not matter. Give tag or digest or both; empty ones are not
// matched.
func (l *Ledger) InUse(repo, tag, digest string) (inUse bool, where []string, err error) {
	err = l.db.View(func(tx *bolt.Tx) error {
		var children []string
		if digest != "" {
			d, err := get[digestRecord](tx.Bucket(bDigests), key(repo, digest))
			if err != nil {
				return err
			}
			children = d.Children
		}
		snaps, err := snapshots(tx)
		if err != nil {
			return err
		}
		for _, s := range snaps {
			for _, im := range s.Images {
				if im.Repo != repo {
					continue
				}
				if (tag != "" && im.Tag == tag) || (digest != "" && (im.Digest == digest || slices.Contains(children, im.Digest))) {
					inUse = true
					for _, w := range im.Where {
						where = addUnique(where, w)
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		return false, nil, fmt.Errorf("reading in-use evidence for %s from ledger: %w", repo, err)
	}
	sort.Strings(where)
	return inUse, where, nil
}

// Freshness returns the time of the last event received (or of the last
// heartbeat while listening, whichever is later) and of the last in-use
// snapshot; each is zero when never.
func (l *Ledger) Freshness() (events, running time.Time, err error) {
	err = l.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bMeta).Get([]byte("lastEvent")); v != nil {
			events, _ = time.Parse(time.RFC3339Nano, string(v))
		}
		ss, err := sessions(tx)
		if err != nil {
			return err
		}
		for _, s := range ss {
			if !strings.HasPrefix(s.Kind, "import") {
				events = maxTime(events, s.Last)
			}
		}
		snaps, err := snapshots(tx)
		if err != nil {
			return err
		}
		for _, s := range snaps {
			running = maxTime(running, s.At)
		}
		return nil
	})
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("reading freshness of ledger: %w", err)
	}
	return events, running, nil
}

// InUseImage is one image a source says is in use.
type InUseImage struct {
	// Ref is the reference as the source wrote it.
	Ref string `json:"ref"`
	// Host is the registry host of Ref ("" when it names none); Repo the
	// repository path; Tag and Digest what Ref or the source's status name.
	Host   string   `json:"host,omitempty"`
	Repo   string   `json:"repo"`
	Tag    string   `json:"tag,omitempty"`
	Digest string   `json:"digest,omitempty"`
	Where  []string `json:"where"`
}

// Snapshot is what one source (a cluster, a file) says is in use at At.
type Snapshot struct {
	Source string       `json:"source"`
	At     time.Time    `json:"at"`
	Images []InUseImage `json:"images"`
}

// RecordInUse replaces the in-use evidence of snap.Source by snap.
func (l *Ledger) RecordInUse(ctx context.Context, snap Snapshot) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := l.db.Update(func(tx *bolt.Tx) error {
		return put(tx.Bucket(bInUse), []byte(snap.Source), snap)
	})
	if err != nil {
		return fmt.Errorf("recording in-use snapshot of %s in ledger %s: %w", snap.Source, l.path, err)
	}
	return nil
}

func snapshots(tx *bolt.Tx) ([]Snapshot, error) {
	var out []Snapshot
	b := tx.Bucket(bInUse)
	err := b.ForEach(func(k, _ []byte) error {
		s, err := get[Snapshot](b, k)
		if err != nil {
			return err
		}
		out = append(out, *s)
		return nil
	})
	return out, err
}

// TagUsage is the usage of one tag, as inventory and show print it.
type TagUsage struct {
	Repo   string `json:"repo"`
	Tag    string `json:"tag"`
	Digest string `json:"digest,omitempty"`
	// LastPulled is null when the ledger has no answer (see LastPull).
	LastPulled *time.Time `json:"lastPulled"`
	LastHead   *time.Time `json:"lastHead"`
	LastPush   *time.Time `json:"lastPush"`
	// Pulls30d is null when the last 30 days are not covered and nothing
	// was pulled in them.
	Pulls30d *int64   `json:"pulls30d"`
	Ignored  int64    `json:"ignored"`
	InUse    *bool    `json:"inUse"`
	Where    []string `json:"where,omitempty"`
}

// Usage answers for one tag: LastPulled and Pulls30d are nil when unknown,
// InUse is nil when no in-use snapshot was ever recorded. digest, when
// given, is the tag's digest as the caller read it from the registry, and
// takes the place of the one the ledger last saw.
func (l *Ledger) Usage(repo, tag, digest string) (TagUsage, error) {
	u := TagUsage{Repo: repo, Tag: tag, Digest: digest}
	now := l.opts.now()
	since := now.Add(-30 * 24 * time.Hour)
	last, known, err := l.lastPull(repo, tag, digest, since)
	if err != nil {
		return u, err
	}
	switch {
	case !last.IsZero():
		u.LastPulled = &last
	case known:
		// not pulled within 30 days and the ledger listened all along:
		// lastPulled stays null but pulls30d is 0
	}
	n, nknown, err := l.pulls(repo, tag, digest, since)
	if err != nil {
		return u, err
	}
	if nknown || n > 0 {
		u.Pulls30d = &n
	}
	err = l.db.View(func(tx *bolt.Tx) error {
		t, d, err := tagView(tx, repo, tag, digest)
		if err != nil {
			return err
		}
		if u.Digest == "" {
			u.Digest = t.Digest
		}
		if h := maxTime(t.LastHead, d.LastHead); !h.IsZero() {
			u.LastHead = &h
		}
		if p := maxTime(t.LastPush, d.LastPush); !p.IsZero() {
			u.LastPush = &p
		}
		u.Ignored = t.Ignored + d.Ignored
		return nil
	})
	if err != nil {
		return u, fmt.Errorf("reading usage of %s:%s from ledger: %w", repo, tag, err)
	}
	_, running, err := l.Freshness()
	if err != nil {
		return u, err
	}
	if !running.IsZero() {
		in, where, err := l.InUse(repo, tag, u.Digest)
		if err != nil {
			return u, err
		}
		u.InUse, u.Where = &in, where
	}
	return u, nil
}

// coveredSince says whether the ledger listened (or imported logs) over
// all of [since, now], without a gap.
func coveredSince(tx *bolt.Tx, since, now time.Time) (bool, error) {
	ss, err := sessions(tx)
	if err != nil {
		return false, err
	}
	cov, _ := coverage(ss, now)
	return isCovered(cov, since, now), nil
}
