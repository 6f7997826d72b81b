//go:build !unix

package backup

// lockSupported: lock does nothing here.
const lockSupported = false

// lock is a no-op where flock is not available: do not run two backups into
// one directory at once there.
func (l Layout) lock() (unlock func(), err error) {
	if l.driver != nil {
		return l.driverLock()
	}
	return func() {}, nil
}
