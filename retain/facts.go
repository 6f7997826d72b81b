package retain

import (
	"time"

	"github.com/regkeeper/regkeeper/internal/walk"
)

// Evidence is the usage ledger as retention reads it (package usage
// implements it). Unknown is never "no": a tag it cannot speak for is kept.
type Evidence interface {
	// LastPull is the last pull credited to repo:tag (a by-digest pull of
	// an index's child credits the index's tags); known=false means
	// "unknown" (no data, or a gap since `since`) and keeps the tag.
	LastPull(repo, tag string, since time.Time) (last time.Time, known bool, err error)
	// InUse says whether repo:tag (at digest) runs or is kept for rollback
	// somewhere, and where.
	InUse(repo, tag, digest string) (inUse bool, where []string, err error)
	// Freshness is the time of the newest event the ledger stored and of
	// its newest in-use snapshot.
	Freshness() (events, running time.Time, err error)
}

// Sources of a push time.
const (
	FromStorage = "storage" // the modification time of the tag's current link
	FromCreated = "created" // the image config's created
	FromHistory = "history" // the newest dated entry of the config's history
)

// Facts is everything Apply judges: read once, judged with no I/O.
type Facts struct {
	Repositories []RepoFacts
	// Usage is what the ledger said about itself; nil when no ledger was
	// given.
	Usage *UsageFacts
	// Problems found while reading (broken things in the registry).
	Problems []walk.Problem
}

// UsageFacts is the ledger's freshness as read.
type UsageFacts struct {
	Events, Running time.Time
	// Err: the ledger could not be read.
	Err string
}

// RepoFacts are one repository's tags.
type RepoFacts struct {
	Name string
	Tags []TagFacts
	// Blobs the repository's tags reference, by digest: for the bytes gc
	// would free. Filled by Gather.
}

// TagFacts is what is known of one tag.
type TagFacts struct {
	Tag    string
	Digest string
	// Pushed and where that time came from (FromStorage, FromCreated,
	// FromHistory); zero when unknown (the tag is then kept by every
	// rule that counts push times).
	Pushed     time.Time
	PushedFrom string
	// Subject is, for a signature, attestation, SBOM or referrers
	// fallback tag, the digest it is attached to.
	Subject string
	// Children are the manifests an index names (not units of their own).
	Children []string
	// Blobs are every blob the tag holds on to, with sizes: its manifest,
	// children, configs and layers.
	Blobs []Blob
	// Pull: the ledger's last pull (PullKnown false: unknown).
	LastPull  time.Time
	PullKnown bool
	PullErr   string
	// InUse, with where; InUseKnown false when the ledger could not say.
	InUse      bool
	InUseWhere []string
	InUseKnown bool
}

// Blob is a content-addressed blob and its size.
type Blob struct {
	Digest string
	Size   int64
}
