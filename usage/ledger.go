// Package usage is the usage ledger: what is pulled from a registry and what
// is running, per repository, tag and digest, kept in a bbolt file.
//
// The ledger is fed by the registry's notifications (Record, one
// transaction per envelope: an envelope is acknowledged only once its
// transaction is committed), by access logs (Import) and by snapshots of
// what clusters run (RecordInUse). It knows when it was listening
// (sessions: start, heartbeat, stop), so a question over a time it was not
// listening is answered "unknown", never "not pulled".
//
// Layout of the file (bbolt buckets, keys and JSON values):
//
//	meta       "schema" → "1"; "lastEvent" → time of the last event received
//	seen       event id → time received (duplicates count once; pruned by age)
//	seenByTime time|id → nil (for pruning seen)
//	tags       repo \x00 tag → tagRecord (current digest, pushes, pulls by tag)
//	digests    repo \x00 digest → digestRecord (pulls by digest, index ↔ children)
//	sessions   start time|kind → Session (the periods the ledger was listening)
//	inuse      source → Snapshot (the latest in-use evidence of each source)
//
// Crediting. A pull by tag is counted on the tag; a pull by digest on the
// digest. A tag's figures are those of the tag plus those of the digest it
// currently points to, so a by-tag HEAD followed by a by-digest GET
// (containerd) is one pull of the tag. A pull by digest of an index's child
// counts on the child and is credited to every index of the same repository
// that lists it (and so to the tags of those indexes); when the same client
// fetched the index less than a minute before, the credit moves the index's
// last pull time but not its count, so that one multi-platform pull is one
// pull. The ledger learns child → index from push events of indexes (the
// registry must send references: `notifications.events.includereferences:
// true`) and from LearnIndex (usage serve --registry reads the manifest of
// an index pulled before the ledger saw it pushed).
package usage

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

var (
	bMeta       = []byte("meta")
	bSeen       = []byte("seen")
	bSeenByTime = []byte("seenByTime")
	bTags       = []byte("tags")
	bDigests    = []byte("digests")
	bSessions   = []byte("sessions")
	bInUse      = []byte("inuse")
)

// Defaults of the ledger.
const (
	DefaultWindowDays = 90
	DefaultSeenTTL    = 7 * 24 * time.Hour
	// sameClient is how long after fetching an index a fetch of one of its
	// children by the same client is taken as part of the same pull.
	sameClient = time.Minute
	dayFormat  = "2006-01-02"
)

// ErrLocked is returned when the ledger file is held by another writer
// (usage serve) and no snapshot can be read instead.
var ErrLocked = errors.New("ledger is locked by another process (a running usage serve?)")

// Option configures a Ledger.
type Option func(*options)

type options struct {
	window  int
	seenTTL time.Duration
	ignore  Ignore
	now     func() time.Time
	log     *slog.Logger
	timeout time.Duration
	noSync  bool
}

// WithWindowDays keeps pulls per day for this many days (default 90).
func WithWindowDays(n int) Option { return func(o *options) { o.window = n } }

// WithSeenTTL keeps event ids this long to count duplicates once (default 7 days).
func WithSeenTTL(d time.Duration) Option { return func(o *options) { o.seenTTL = d } }

// WithIgnore sets who is not counted as pulling (regkeeper itself always is not).
func WithIgnore(ig Ignore) Option { return func(o *options) { o.ignore = ig } }

// WithClock sets the clock (tests).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithLockTimeout is how long Open and OpenWrite wait for the file lock
// (default 200ms for readers, 1s for writers).
func WithLockTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithNoSync skips fsync on commit: NOT crash-safe, for benchmarks that
// measure size only.
func WithNoSync() Option { return func(o *options) { o.noSync = true } }

// Ledger is an open ledger file, for writing (OpenWrite) or reading (Open).
type Ledger struct {
	db       *bolt.DB
	path     string
	opts     options
	readOnly bool
	// Snapshot is true when Open read the snapshot usage serve writes next
	// to the file, because serve holds the file itself.
	Snapshot bool
	session  []byte
}

func buildOptions(opts []Option, timeout time.Duration) options {
	o := options{window: DefaultWindowDays, seenTTL: DefaultSeenTTL, now: time.Now, timeout: timeout}
	for _, f := range opts {
		f(&o)
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	if o.window < 1 {
		o.window = DefaultWindowDays
	}
	return o
}

// SnapshotPath is where usage serve writes the consistent copy of the
// ledger that readers open while serve holds the file: FILE.snapshot.
func SnapshotPath(path string) string { return path + ".snapshot" }

// OpenWrite opens (creating it if needed) the ledger file for writing. Only
// one process can: bbolt holds an exclusive lock on the file.
func OpenWrite(path string, opts ...Option) (*Ledger, error) {
	o := buildOptions(opts, time.Second)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: o.timeout, NoSync: o.noSync})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("opening ledger %s: %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("opening ledger %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bMeta, bSeen, bSeenByTime, bTags, bDigests, bSessions, bInUse} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return tx.Bucket(bMeta).Put([]byte("schema"), []byte("1"))
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("initialising ledger %s: %w", path, err)
	}
	return &Ledger{db: db, path: path, opts: o}, nil
}

// Open opens the ledger for reading. It is usable while usage serve runs:
// when serve holds the file, Open reads the consistent snapshot serve
// writes next to it (SnapshotPath), and Snapshot is set; the snapshot is at
// most serve's --every old, which Freshness shows. When serve does not run,
// the reader holds a shared lock on the file that keeps serve from
// starting: read, then Close promptly.
func Open(path string, opts ...Option) (*Ledger, error) {
	o := buildOptions(opts, 200*time.Millisecond)
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("opening ledger %s: %w", path, err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: o.timeout})
	if err == nil {
		return &Ledger{db: db, path: path, opts: o, readOnly: true}, nil
	}
	if !errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("opening ledger %s: %w", path, err)
	}
	snap := SnapshotPath(path)
	db, serr := bolt.Open(snap, 0o600, &bolt.Options{ReadOnly: true, Timeout: o.timeout})
	if serr != nil {
		return nil, fmt.Errorf("opening ledger %s: %w, and its snapshot %s: %v", path, ErrLocked, snap, serr)
	}
	return &Ledger{db: db, path: path, opts: o, readOnly: true, Snapshot: true}, nil
}

// Close closes the file. A writer that was listening records the stop.
func (l *Ledger) Close() error {
	if l.session != nil {
		if err := l.StopListening(); err != nil {
			l.db.Close()
			return err
		}
	}
	return l.db.Close()
}

// Path is the ledger file.
func (l *Ledger) Path() string { return l.path }

// Size is the size of the ledger file in bytes.
func (l *Ledger) Size() int64 {
	var n int64
	_ = l.db.View(func(tx *bolt.Tx) error { n = tx.Size(); return nil })
	return n
}

// WriteSnapshot writes a consistent copy of the ledger to path (a
// temporary file, fsynced, renamed into place), from one read transaction.
func (l *Ledger) WriteSnapshot(path string) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("writing ledger snapshot: %w", err)
	}
	defer os.Remove(f.Name())
	err = l.db.View(func(tx *bolt.Tx) error {
		_, err := tx.WriteTo(f)
		return err
	})
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("writing ledger snapshot %s: %w", path, err)
	}
	return nil
}

// Counts is a set of figures for a tag or digest.
type Counts struct {
	// LastPull is the last GET of the manifest; LastHead the last HEAD.
	LastPull time.Time `json:"lastPull,omitzero"`
	LastHead time.Time `json:"lastHead,omitzero"`
	LastPush time.Time `json:"lastPush,omitzero"`
	// Pulls and Heads are totals since the ledger began; Ignored counts
	// requests by regkeeper and by the configured user agents and accounts.
	Pulls   int64 `json:"pulls"`
	Heads   int64 `json:"heads"`
	Ignored int64 `json:"ignored"`
	// Days is pulls (GETs) per UTC day, for the window.
	Days map[string]int64 `json:"days,omitempty"`
}

type tagRecord struct {
	Counts
	Digest  string    `json:"digest,omitempty"`
	Deleted time.Time `json:"deleted,omitzero"`
}

type digestRecord struct {
	Counts
	MediaType string   `json:"mediaType,omitempty"`
	Children  []string `json:"children,omitempty"`
	Parents   []string `json:"parents,omitempty"`
	// FetchedBy and FetchedAt are the client and time of the last GET of
	// this manifest (by tag or digest), to tell a child fetched as part of
	// the same pull.
	FetchedBy string    `json:"fetchedBy,omitempty"`
	FetchedAt time.Time `json:"fetchedAt,omitzero"`
}

func key(repo, s string) []byte { return []byte(repo + "\x00" + s) }

func splitKey(k []byte) (repo, s string) {
	r, s, _ := strings.Cut(string(k), "\x00")
	return r, s
}

func get[T any](b *bolt.Bucket, k []byte) (*T, error) {
	v := b.Get(k)
	rec := new(T)
	if v == nil {
		return rec, nil
	}
	if err := json.Unmarshal(v, rec); err != nil {
		return nil, fmt.Errorf("decoding ledger record %q: %w", k, err)
	}
	return rec, nil
}

func put(b *bolt.Bucket, k []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(k, raw)
}

func timeKey(t time.Time) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(t.UnixNano()))
	return b[:]
}

func maxTime(ts ...time.Time) time.Time {
	var m time.Time
	for _, t := range ts {
		if t.After(m) {
			m = t
		}
	}
	return m
}

// addDay counts one pull on day at, dropping days older than the window.
func (c *Counts) addDay(at time.Time, window int) {
	if c.Days == nil {
		c.Days = map[string]int64{}
	}
	c.Days[at.UTC().Format(dayFormat)]++
	oldest := at.UTC().AddDate(0, 0, -window).Format(dayFormat)
	for d := range c.Days {
		if d < oldest {
			delete(c.Days, d)
		}
	}
}

// since sums the pulls per day on or after the day of from.
func (c *Counts) since(from time.Time) int64 {
	first := from.UTC().Format(dayFormat)
	var n int64
	for d, v := range c.Days {
		if d >= first {
			n += v
		}
	}
	return n
}

func addUnique(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// keyPrefix returns the keys of b starting with prefix.
func keyPrefix(b *bolt.Bucket, prefix []byte, fn func(k, v []byte) error) error {
	c := b.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return nil
}
