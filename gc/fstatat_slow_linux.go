//go:build linux && !amd64 && !arm64

package gc

import "golang.org/x/sys/unix"

// fstatatz is unix.Fstatat for a NUL-terminated name.
func fstatatz(dirfd int, name []byte, st *unix.Stat_t, flags int) error {
	return unix.Fstatat(dirfd, string(name[:len(name)-1]), st, flags)
}
