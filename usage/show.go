package usage

import (
	"context"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Summary is the whole ledger as usage show prints it.
type Summary struct {
	Path string `json:"path"`
	// Snapshot is true when the ledger was read from the snapshot of a
	// running usage serve.
	Snapshot bool `json:"snapshot"`
	// Listening is true when a usage serve session is live.
	Listening bool `json:"listening"`
	// LastEvent and LastInUse are Freshness's answers (null when never).
	LastEvent *time.Time `json:"lastEvent"`
	LastInUse *time.Time `json:"lastInUse"`
	// Covered are the periods the ledger listened or imported; Gaps the
	// periods between them (and since the last, when nothing listens):
	// questions over them are answered "unknown".
	Covered  []Interval   `json:"covered"`
	Gaps     []Interval   `json:"gaps"`
	Sessions []Session    `json:"sessions"`
	Tags     []TagUsage   `json:"tags"`
	Sources  []SourceInfo `json:"inUseSources"`
	// Digests is the number of manifests the ledger holds a record for.
	Digests   int   `json:"digests"`
	SizeBytes int64 `json:"sizeBytes"`
}

// SourceInfo is one in-use source and how many images it listed.
type SourceInfo struct {
	Source string    `json:"source"`
	At     time.Time `json:"at"`
	Images int       `json:"images"`
}

func ptime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// Summarize reads the whole ledger.
func (l *Ledger) Summarize(ctx context.Context) (*Summary, error) {
	s := &Summary{Path: l.path, Snapshot: l.Snapshot, SizeBytes: l.Size(), Covered: []Interval{}, Gaps: []Interval{}, Tags: []TagUsage{}, Sources: []SourceInfo{}}
	now := l.opts.now()
	events, running, err := l.Freshness()
	if err != nil {
		return nil, err
	}
	s.LastEvent, s.LastInUse = ptime(events), ptime(running)
	type rt struct{ repo, tag string }
	var tags []rt
	err = l.db.View(func(tx *bolt.Tx) error {
		ss, err := sessions(tx)
		if err != nil {
			return err
		}
		s.Sessions = ss
		cov, live := coverage(ss, now)
		s.Listening = live
		s.Covered = append(s.Covered, cov...)
		s.Gaps = append(s.Gaps, gapsOf(cov, live, now)...)
		if err := tx.Bucket(bTags).ForEach(func(k, _ []byte) error {
			r, t := splitKey(k)
			tags = append(tags, rt{r, t})
			return nil
		}); err != nil {
			return err
		}
		s.Digests = tx.Bucket(bDigests).Stats().KeyN
		snaps, err := snapshots(tx)
		if err != nil {
			return err
		}
		for _, sn := range snaps {
			s.Sources = append(s.Sources, SourceInfo{sn.Source, sn.At, len(sn.Images)})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading ledger %s: %w", l.path, err)
	}
	sort.Slice(tags, func(i, j int) bool {
		if tags[i].repo != tags[j].repo {
			return tags[i].repo < tags[j].repo
		}
		return tags[i].tag < tags[j].tag
	})
	for _, t := range tags {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		u, err := l.Usage(t.repo, t.tag, "")
		if err != nil {
			return nil, err
		}
		s.Tags = append(s.Tags, u)
	}
	return s, nil
}
