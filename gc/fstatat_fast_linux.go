//go:build linux && (amd64 || arm64)

package gc

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// fstatatz is unix.Fstatat for a NUL-terminated name, without copying it:
// gc stats one link per entry of every directory it lists.
func fstatatz(dirfd int, name []byte, st *unix.Stat_t, flags int) error {
	if len(name) == 0 || name[len(name)-1] != 0 {
		panic("gc: fstatatz needs a NUL-terminated name")
	}
	_, _, e := unix.Syscall6(unix.SYS_NEWFSTATAT, uintptr(dirfd), uintptr(unsafe.Pointer(&name[0])), uintptr(unsafe.Pointer(st)), uintptr(flags), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}
