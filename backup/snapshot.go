package backup

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// A snapshot is the record of one backup run: when it ran, from which
// registry, every repository:tag and referrer it found and backed up (as
// index.json descriptors, with the same annotations), and whether the run
// finished. It lives in DIR/.regkeeper/snapshots/<id>.json, outside the
// OCI layout (readers of the layout ignore it).
//
// A run writes its snapshot twice: at its start with status "running" (so
// that a run killed outright leaves a record that it did not finish), and
// at its end, after index.json, with status "complete" or "incomplete"
// (interrupted, failed, or some images could not be backed up). Both writes
// are atomic (temporary file, fsync, rename).
type Snapshot struct {
	ID string `json:"id"`
	// Seq orders snapshots (1, 2, …): runs of the same second, or stamped
	// with a fixed clock, are still ordered.
	Seq      int       `json:"seq"`
	Time     time.Time `json:"time"`
	Registry string    `json:"registry"`
	// Status is SnapshotRunning, SnapshotComplete or SnapshotIncomplete;
	// Reason says why a run is incomplete.
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
	// RepoFilter and TagFilter are the --repo and --tag of the run: a
	// complete snapshot of a filtered run holds what the filters selected.
	RepoFilter string `json:"repoFilter,omitempty"`
	TagFilter  string `json:"tagFilter,omitempty"`
	// Manifests are the tags and referrers the run backed up, as
	// index.json entries (see Entry).
	Manifests []v1.Descriptor `json:"manifests"`
}

// Snapshot statuses.
const (
	SnapshotRunning    = "running"
	SnapshotComplete   = "complete"
	SnapshotIncomplete = "incomplete"
)

// Complete reports whether the run finished with everything it selected
// backed up.
func (s *Snapshot) Complete() bool { return s.Status == SnapshotComplete }

// Entries are the snapshot's manifests as index.json entries.
func (s *Snapshot) Entries() []Entry {
	out := make([]Entry, len(s.Manifests))
	for i, d := range s.Manifests {
		out[i] = Entry{d}
	}
	return out
}

// Images counts the tag entries of the snapshot.
func (s *Snapshot) Images() int {
	n := 0
	for _, e := range s.Entries() {
		if e.Kind() == KindTag {
			n++
		}
	}
	return n
}

// SnapshotInfo is a snapshot without its manifests, for listings.
type SnapshotInfo struct {
	ID        string    `json:"id"`
	Time      time.Time `json:"time"`
	Registry  string    `json:"registry"`
	Status    string    `json:"status"`
	Reason    string    `json:"reason,omitempty"`
	Images    int       `json:"images"`
	Referrers int       `json:"referrers"`
}

// Info summarises s.
func (s *Snapshot) Info() SnapshotInfo {
	in := SnapshotInfo{ID: s.ID, Time: s.Time, Registry: s.Registry, Status: s.Status, Reason: s.Reason}
	for _, e := range s.Entries() {
		switch e.Kind() {
		case KindTag:
			in.Images++
		case KindReferrer:
			in.Referrers++
		}
	}
	return in
}

// ReadSnapshots returns the snapshots of the layout, oldest first. A
// layout with none (written before snapshots existed, or by another tool)
// returns an empty list.
func (l Layout) ReadSnapshots() ([]*Snapshot, error) {
	names, err := l.readDir(l.SnapshotsDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading snapshots: %w", err)
	}
	var out []*Snapshot
	for _, n := range names {
		id, ok := strings.CutSuffix(n, ".json")
		if !ok {
			continue
		}
		if _, _, regular, err := l.stat(l.SnapshotFile(id)); err == nil && !regular {
			continue // a directory named *.json
		}
		b, err := l.readFile(l.SnapshotFile(id))
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed since listed
		}
		if err != nil {
			return nil, fmt.Errorf("reading snapshot %s: %w", id, err)
		}
		var s Snapshot
		if err := json.Unmarshal(b, &s); err != nil {
			return nil, fmt.Errorf("parsing snapshot %s: %w", l.SnapshotFile(id), err)
		}
		s.ID = id
		out = append(out, &s)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Seq != out[j].Seq {
			return out[i].Seq < out[j].Seq
		}
		return out[i].Time.Before(out[j].Time)
	})
	return out, nil
}

// FindSnapshot returns the snapshot named by id: "latest" (the latest
// complete one), an ID, or a unique prefix of one.
func FindSnapshot(snaps []*Snapshot, id string) (*Snapshot, error) {
	if id == "latest" {
		if s := latestComplete(snaps); s != nil {
			return s, nil
		}
		return nil, fmt.Errorf("%w: no backup run has completed", ErrNoSnapshot)
	}
	var found *Snapshot
	for _, s := range snaps {
		if s.ID == id {
			return s, nil
		}
		if strings.HasPrefix(s.ID, id) {
			if found != nil {
				return nil, fmt.Errorf("snapshot %q is ambiguous (%s, %s, …)", id, found.ID, s.ID)
			}
			found = s
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%w: no snapshot %q (regkeeper backup snapshots DIR lists them)", ErrNoSnapshot, id)
	}
	return found, nil
}

// latestComplete is the newest complete snapshot, or nil.
func latestComplete(snaps []*Snapshot) *Snapshot {
	for i := len(snaps) - 1; i >= 0; i-- {
		if snaps[i].Complete() {
			return snaps[i]
		}
	}
	return nil
}

// writeSnapshot saves s atomically.
func (l Layout) writeSnapshot(s *Snapshot) error {
	if err := l.mkdirAll(l.SnapshotsDir()); err != nil {
		return &WriteError{Path: l.SnapshotsDir(), Err: err}
	}
	if s.Manifests == nil {
		s.Manifests = []v1.Descriptor{}
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	path := l.SnapshotFile(s.ID)
	if err := writeFileAtomic(l, path, append(b, '\n')); err != nil {
		return &WriteError{Path: path, Err: err}
	}
	return nil
}

// newSnapshot starts the record of a run: a fresh ID and the next sequence
// number.
func (l Layout) newSnapshot(now time.Time, registry string) (*Snapshot, error) {
	snaps, err := l.ReadSnapshots()
	if err != nil {
		return nil, err
	}
	seq := 1
	if len(snaps) > 0 {
		seq = snaps[len(snaps)-1].Seq + 1
	}
	return &Snapshot{ID: randomSuffix()[:8], Seq: seq, Time: now.UTC(), Registry: registry, Status: SnapshotRunning}, nil
}

// sortEntries orders descriptors as index.json does.
func sortEntries(entries []v1.Descriptor) {
	sort.SliceStable(entries, func(i, j int) bool {
		a, b := Entry{entries[i]}, Entry{entries[j]}
		if a.Repository() != b.Repository() {
			return a.Repository() < b.Repository()
		}
		if a.Kind() != b.Kind() {
			return a.Kind() > b.Kind() // tag, referrer, history
		}
		if a.Annotations[AnnotationRefName] != b.Annotations[AnnotationRefName] {
			return a.Annotations[AnnotationRefName] < b.Annotations[AnnotationRefName]
		}
		return a.Digest.String() < b.Digest.String()
	})
}
