//go:build unix

package gc

import (
	"errors"
	"syscall"
)

// processAlive tells whether a process of this host is running (signal 0:
// ESRCH is a dead process; EPERM a live one of another user). It is a
// variable for tests.
var processAlive = func(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
