package backup

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Annotations on the descriptors of index.json. An entry is one of:
//
//   - a tag: ref.name "repo:tag", with AnnotationRepository, AnnotationTag
//     and AnnotationBackedUp; what crane, skopeo and regctl select with
//     oci:DIR:repo:tag or ocidir://DIR:repo:tag;
//   - a history entry (--keep-history): what a tag pointed at before it
//     moved; ref.name "repo:tag@<AnnotationBackedUp>", i.e. the tag as the
//     backup of that time found it, valid until AnnotationReplaced;
//   - a referrer: a manifest found through the referrers API whose subject
//     is AnnotationSubject; no ref.name, as it has no tag.
//
// Entries are never removed: a tag deleted from the registry stays in the
// backup.
const (
	AnnotationRefName    = "org.opencontainers.image.ref.name"
	AnnotationRepository = "io.regkeeper.repository"
	AnnotationTag        = "io.regkeeper.tag"
	// AnnotationBackedUp is the RFC 3339 time of the run that first found
	// this digest under this name.
	AnnotationBackedUp = "io.regkeeper.backed-up"
	// AnnotationReplaced, on a history entry, is the time of the run that
	// found the tag moved.
	AnnotationReplaced = "io.regkeeper.replaced"
	AnnotationSubject  = "io.regkeeper.subject"
	// AnnotationAbsent lists, comma-separated, the children of an index that
	// the registry did not have in that repository when it was backed up;
	// verify and restore expect them to be absent.
	AnnotationAbsent = "io.regkeeper.absent-children"
)

// Kinds of index.json entries.
const (
	KindTag      = "tag"
	KindHistory  = "history"
	KindReferrer = "referrer"
)

// Entry is an index.json descriptor, read.
type Entry struct {
	v1.Descriptor
}

// Repository the entry was backed up from.
func (e Entry) Repository() string { return e.Annotations[AnnotationRepository] }

// Tag of a tag or history entry.
func (e Entry) Tag() string { return e.Annotations[AnnotationTag] }

// Kind is KindTag, KindHistory or KindReferrer.
func (e Entry) Kind() string {
	switch {
	case e.Annotations[AnnotationSubject] != "" && e.Annotations[AnnotationTag] == "":
		return KindReferrer
	case e.Annotations[AnnotationReplaced] != "":
		return KindHistory
	}
	return KindTag
}

// Absent returns the children recorded as absent at the source.
func (e Entry) Absent() map[v1.Hash]bool {
	out := map[v1.Hash]bool{}
	for _, s := range strings.Split(e.Annotations[AnnotationAbsent], ",") {
		if h, err := v1.NewHash(strings.TrimSpace(s)); err == nil {
			out[h] = true
		}
	}
	return out
}

// index is index.json in memory, safe for concurrent use.
type index struct {
	mu      sync.Mutex
	entries []v1.Descriptor
	// Positions in entries of the current tag entries ("repo:tag") and of
	// the referrer entries ("repo@digest"); entries are never removed.
	tags, referrers map[string]int

	wmu     sync.Mutex // serialises writes
	written []byte     // what index.json holds on disk
}

// ReadIndex reads DIR/index.json; a missing file is an empty index.
func (l Layout) ReadIndex() ([]Entry, error) {
	idx, err := l.readIndex()
	if err != nil {
		return nil, err
	}
	out := make([]Entry, len(idx.entries))
	for i, d := range idx.entries {
		out[i] = Entry{d}
	}
	return out, nil
}

func (l Layout) readIndex() (*index, error) {
	b, err := l.readFile(l.IndexFile())
	if errors.Is(err, fs.ErrNotExist) {
		return &index{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading index.json: %w", err)
	}
	var im v1.IndexManifest
	if err := json.Unmarshal(b, &im); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", l.IndexFile(), err)
	}
	return &index{entries: im.Manifests, written: b}, nil
}

// lookup builds the position maps on first use. Called with mu held.
func (x *index) lookup() {
	if x.tags != nil {
		return
	}
	x.tags, x.referrers = map[string]int{}, map[string]int{}
	for i, d := range x.entries {
		e := Entry{d}
		switch e.Kind() {
		case KindTag:
			x.tags[e.Repository()+":"+e.Tag()] = i
		case KindReferrer:
			x.referrers[e.Repository()+"@"+d.Digest.String()] = i
		}
	}
}

// snapshot returns the entries.
func (x *index) snapshot() []Entry {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := make([]Entry, len(x.entries))
	for i, d := range x.entries {
		out[i] = Entry{d}
	}
	return out
}

// tag returns the current entry of repo:tag.
func (x *index) tag(repo, tag string) (v1.Descriptor, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.lookup()
	i, ok := x.tags[repo+":"+tag]
	if !ok {
		return v1.Descriptor{}, false
	}
	return x.entries[i], true
}

// setTag records that repo:tag is desc. A previous entry of another digest
// is replaced, or kept as a history entry when keepHistory is set.
func (x *index) setTag(repo, tag string, desc v1.Descriptor, absent []v1.Hash, now time.Time, keepHistory bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	stamp := now.UTC().Format(time.RFC3339)
	ann := map[string]string{
		AnnotationRefName:    repo + ":" + tag,
		AnnotationRepository: repo,
		AnnotationTag:        tag,
		AnnotationBackedUp:   stamp,
	}
	if len(absent) > 0 {
		ann[AnnotationAbsent] = joinHashes(absent)
	}
	nd := v1.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size, ArtifactType: desc.ArtifactType, Annotations: ann}
	x.lookup()
	if i, ok := x.tags[repo+":"+tag]; ok {
		d := x.entries[i]
		if d.Digest == desc.Digest {
			if len(absent) > 0 && d.Annotations[AnnotationAbsent] != ann[AnnotationAbsent] {
				// A new map: snapshots share the old one.
				a := cloneMap(d.Annotations)
				a[AnnotationAbsent] = ann[AnnotationAbsent]
				x.entries[i].Annotations = a
			}
			return
		}
		if keepHistory {
			old := d
			old.Annotations = cloneMap(d.Annotations)
			since := old.Annotations[AnnotationBackedUp]
			if since == "" {
				since = stamp
			}
			old.Annotations[AnnotationRefName] = repo + ":" + tag + "@" + since
			old.Annotations[AnnotationReplaced] = stamp
			x.entries = append(x.entries, old)
		}
		x.entries[i] = nd
		return
	}
	x.tags[repo+":"+tag] = len(x.entries)
	x.entries = append(x.entries, nd)
}

// referrer returns the entry of a referrer of repo.
func (x *index) referrer(repo string, d v1.Hash) (v1.Descriptor, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.lookup()
	i, ok := x.referrers[repo+"@"+d.String()]
	if !ok {
		return v1.Descriptor{}, false
	}
	return x.entries[i], true
}

// addReferrer records a referrer of subject in repo, once.
func (x *index) addReferrer(repo string, desc v1.Descriptor, subject v1.Hash, now time.Time) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.lookup()
	key := repo + "@" + desc.Digest.String()
	if _, ok := x.referrers[key]; ok {
		return false
	}
	x.referrers[key] = len(x.entries)
	x.entries = append(x.entries, v1.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size, ArtifactType: desc.ArtifactType,
		Annotations: map[string]string{
			AnnotationRepository: repo,
			AnnotationSubject:    subject.String(),
			AnnotationBackedUp:   now.UTC().Format(time.RFC3339),
		}})
	return true
}

// marshal renders index.json, entries in a stable order.
func (x *index) marshal() ([]byte, error) {
	x.mu.Lock()
	entries := append([]v1.Descriptor(nil), x.entries...)
	x.mu.Unlock()
	sortEntries(entries)
	if entries == nil {
		entries = []v1.Descriptor{}
	}
	b, err := json.MarshalIndent(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: entries}, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// write saves index.json atomically when it changed, after making the blobs
// it names durable.
func (x *index) write(l Layout) error {
	x.wmu.Lock()
	defer x.wmu.Unlock()
	b, err := x.marshal()
	if err != nil {
		return err
	}
	if bytes.Equal(b, x.written) {
		return nil
	}
	if err := l.syncBlobDirs(); err != nil {
		return &WriteError{Path: l.BlobsDir(), Err: err}
	}
	if err := writeFileAtomic(l, l.IndexFile(), b); err != nil {
		return &WriteError{Path: l.IndexFile(), Err: err}
	}
	x.written = b
	return nil
}

func joinHashes(hs []v1.Hash) string {
	s := make([]string, len(hs))
	for i, h := range hs {
		s[i] = h.String()
	}
	sort.Strings(s)
	return strings.Join(s, ",")
}

func cloneMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
