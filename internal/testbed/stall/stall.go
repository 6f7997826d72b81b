// Package stall wraps a registry's storage driver so that a test can hold
// one request of the registry between two of its storage operations: the
// registry's own code runs unchanged, and the request waits where a slow
// storage or a descheduled goroutine would make it wait. gc's tests use it
// to hold a push after its checks and before its link writes while gc
// passes a chosen step.
//
// A hold is armed for one operation (PutContent before it writes, Stat
// after it has read) on the first path a match function accepts, fires
// once, and is released by the test:
//
//	d := stall.New()                                   // embedded.Options{WrapStorage: d.Wrap}
//	h := d.Arm(stall.PutContent, stall.Suffix("/_manifests/revisions/sha256/"+hex+"/link"))
//	go push()                                          // the registry checks, then blocks in the write
//	<-h.Reached()
//	... gc passes a step ...
//	h.Release()
package stall

import (
	"context"
	"strings"
	"sync"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
)

// Operations a hold can be armed on.
const (
	// PutContent holds before the write: what the request checked before
	// is judged, what it writes is not written yet.
	PutContent = "PutContent"
	// Stat holds after the read: the request has seen the storage as it
	// was, and acts on it (a cache entry, a response) only when released.
	Stat = "Stat"
)

// Suffix matches a path ending in s.
func Suffix(s string) func(string) bool {
	return func(p string) bool { return strings.HasSuffix(p, s) }
}

// Storage is a set of holds, shared by every driver it wraps.
type Storage struct {
	mu    sync.Mutex
	holds []*Hold
}

// New returns a Storage with no hold armed.
func New() *Storage { return &Storage{} }

// Wrap wraps a driver (embedded.Options.WrapStorage).
func (s *Storage) Wrap(d storagedriver.StorageDriver) storagedriver.StorageDriver {
	return &driver{StorageDriver: d, s: s}
}

// Hold is one armed hold.
type Hold struct {
	op      string
	match   func(string) bool
	path    string
	reached chan struct{}
	release chan struct{}
	relOnce sync.Once
}

// Arm holds the next op on a path match accepts.
func (s *Storage) Arm(op string, match func(string) bool) *Hold {
	h := &Hold{op: op, match: match, reached: make(chan struct{}), release: make(chan struct{})}
	s.mu.Lock()
	s.holds = append(s.holds, h)
	s.mu.Unlock()
	return h
}

// Reached is closed when a request is held.
func (h *Hold) Reached() <-chan struct{} { return h.reached }

// Path is the path the request is held on, once Reached.
func (h *Hold) Path() string { <-h.reached; return h.path }

// Release lets the held request (or the next one, if none is held yet) go
// on. It is safe to call more than once.
func (h *Hold) Release() { h.relOnce.Do(func() { close(h.release) }) }

// take disarms and returns the hold for op on p, if one is armed.
func (s *Storage) take(op, p string) *Hold {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, h := range s.holds {
		if h.op == op && h.match(p) {
			s.holds = append(s.holds[:i], s.holds[i+1:]...)
			h.path = p
			return h
		}
	}
	return nil
}

func (h *Hold) wait(ctx context.Context) {
	close(h.reached)
	select {
	case <-h.release:
	case <-ctx.Done():
	}
}

type driver struct {
	storagedriver.StorageDriver
	s *Storage
}

func (d *driver) PutContent(ctx context.Context, p string, content []byte) error {
	if h := d.s.take(PutContent, p); h != nil {
		h.wait(ctx)
	}
	return d.StorageDriver.PutContent(ctx, p, content)
}

func (d *driver) Stat(ctx context.Context, p string) (storagedriver.FileInfo, error) {
	fi, err := d.StorageDriver.Stat(ctx, p)
	if h := d.s.take(Stat, p); h != nil {
		h.wait(ctx)
	}
	return fi, err
}
