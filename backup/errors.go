package backup

import (
	"errors"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Sentinel errors, checked with errors.Is.
var (
	// ErrNotLayout: the directory is not a backup (no oci-layout file), or is
	// not empty and so cannot become one.
	ErrNotLayout = errors.New("not an OCI image layout")
	// ErrLocked: another backup is writing to the directory.
	ErrLocked = errors.New("backup directory is locked by another run")
)

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
