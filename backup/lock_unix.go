//go:build unix

package backup

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"
)

// lockSupported: lock is exclusive here.
const lockSupported = true

// lock takes DIR/.regkeeper/lock exclusively, so that two backups (or a
// backup and a forget, or verify --repair) never write one index.json. The
// kernel releases it when the process dies. The holder writes who it is
// into the file, so that a second run can name it.
func (l Layout) lock() (unlock func(), err error) {
	if l.driver != nil {
		return l.driverLock()
	}
	if err := os.MkdirAll(l.PrivateDir(), 0o755); err != nil {
		return nil, &WriteError{Path: l.PrivateDir(), Err: err}
	}
	f, err := os.OpenFile(l.LockFile(), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, &WriteError{Path: l.LockFile(), Err: err}
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		holder, _ := os.ReadFile(l.LockFile())
		if h := strings.TrimSpace(string(holder)); h != "" {
			return nil, fmt.Errorf("%w: held by %s (%s)", ErrLocked, h, l.LockFile())
		}
		return nil, fmt.Errorf("%w: %s", ErrLocked, l.LockFile())
	}
	host, _ := os.Hostname()
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(fmt.Sprintf("regkeeper pid %d on %s since %s\n", os.Getpid(), host, time.Now().UTC().Format(time.RFC3339))), 0)
	return func() {
		_ = f.Truncate(0)
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
