//go:build unix

package backup

import (
	"fmt"
	"os"
	"syscall"
)

// lockSupported: lock is exclusive here.
const lockSupported = true

// lock takes DIR/.regkeeper/lock exclusively, so that two backups never
// write one index.json. The kernel releases it when the process dies.
func (l Layout) lock() (unlock func(), err error) {
	f, err := os.OpenFile(l.LockFile(), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: %s", ErrLocked, l.LockFile())
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
