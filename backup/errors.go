package backup

import (
	"errors"
	"fmt"

	"github.com/regkeeper/regkeeper/internal/client"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Sentinel errors, checked with errors.Is.
var (
	// ErrNotLayout: the directory is not a backup (no oci-layout file), or is
	// not empty and so cannot become one.
	ErrNotLayout = errors.New("not an OCI image layout")
	// ErrLocked: another backup is writing to the directory.
	ErrLocked = errors.New("backup directory is locked by another run")
	// ErrNoSnapshot: the snapshot asked for is not in the backup.
	ErrNoSnapshot = errors.New("no such snapshot")
)

// WriteError is a failure to write into the backup directory (a full
// disk, a read-only file system): what failed is the backup's storage,
// not the registry.
type WriteError struct {
	Path string
	Err  error
}

func (e *WriteError) Error() string { return fmt.Sprintf("writing the backup: %s: %v", e.Path, e.Err) }
func (e *WriteError) Unwrap() error { return e.Err }

// describe renders an error of a run for its report: a write into the
// backup names the path (a full disk is not the registry being
// unreachable), anything else as the client describes it.
func describe(err error) string {
	var we *WriteError
	if errors.As(err, &we) {
		return we.Error()
	}
	return client.Describe(err)
}

// DigestError is a blob whose content does not match its digest or size.
type DigestError struct {
	Want, Got         v1.Hash
	WantSize, GotSize int64 // WantSize < 0: not checked
}

func (e *DigestError) Error() string {
	if e.WantSize >= 0 && e.WantSize != e.GotSize {
		return fmt.Sprintf("blob %s: got %d bytes, want %d", e.Want, e.GotSize, e.WantSize)
	}
	return fmt.Sprintf("blob %s: content hashes to %s", e.Want, e.Got)
}

// Error is a repository, tag or manifest that could not be backed up or
// restored; the run goes on with the others.
type Error struct {
	Repository string `json:"repository"`
	Tag        string `json:"tag,omitempty"`
	Digest     string `json:"digest,omitempty"`
	Error      string `json:"error"`
}
