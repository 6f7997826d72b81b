// Who holds the gc lock, and whether that process is gone.

package gc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// lockHolder identifies the process that wrote a lock: its host, its PID,
// and, on Linux, the boot and the PID namespace the PID belongs to (two
// containers may share a host name, and PIDs restart at every boot).
type lockHolder struct {
	Host         string `json:"host,omitempty"`
	PID          int    `json:"pid,omitempty"`
	BootID       string `json:"bootID,omitempty"`
	PIDNamespace string `json:"pidNamespace,omitempty"`
	// Written is the wall clock when the lock was written (Options.Now
	// may be another clock), to tell a reused PID from the holder.
	Written time.Time `json:"written,omitzero"`
}

// thisHolder is this process.
func thisHolder() lockHolder {
	host, _ := os.Hostname()
	boot, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	ns, _ := os.Readlink("/proc/self/ns/pid")
	return lockHolder{Host: host, PID: os.Getpid(), BootID: strings.TrimSpace(string(boot)), PIDNamespace: ns, Written: time.Now()}
}

// newLockFile is this process's lock, written at now.
func newLockFile(now time.Time) lockFile {
	h := thisHolder()
	return lockFile{Holder: fmt.Sprintf("regkeeper gc pid %d on %s (%d)", h.PID, h.Host, now.UnixNano()), Time: now, lockHolder: h}
}

// oldHolder reads the holder of a lock written before locks had fields:
// "regkeeper gc pid 123 on host (1700000000000000000)".
var oldHolder = regexp.MustCompile(`^regkeeper gc pid (\d+) on (\S+) \(`)

// deadHere says whether the lock was written by a process of this host
// (same host name, and same boot and PID namespace when the lock names
// them) that no longer runs, and if so which PID. A lock of another host,
// or whose holder cannot be told, is not: only --stale-lock ends it.
func (lf lockFile) deadHere() (int, bool) {
	h := lf.lockHolder
	if h.PID == 0 {
		m := oldHolder.FindStringSubmatch(lf.Holder)
		if m == nil {
			return 0, false
		}
		h.PID, _ = strconv.Atoi(m[1])
		h.Host = m[2]
	}
	me := thisHolder()
	switch {
	case h.PID <= 0 || h.Host == "" || h.Host != me.Host:
		return 0, false
	case h.BootID != "" && h.BootID != me.BootID:
		return 0, false
	case h.PIDNamespace != "" && h.PIDNamespace != me.PIDNamespace:
		return 0, false
	}
	if !processRuns(h.PID) {
		return h.PID, true
	}
	// The PID runs: the holder, unless that process started after the
	// lock was written (the holder died and its PID was reused).
	if start, ok := processStart(h.PID); ok && !h.Written.IsZero() && start.After(h.Written.Add(5*time.Second)) {
		return h.PID, true
	}
	return 0, false
}

// processRuns reports whether a process with this PID exists (a process
// of another user counts).
func processRuns(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// processStart is the start time of a process, from /proc (Linux), to the
// second; ok is false where /proc cannot tell.
func processStart(pid int) (time.Time, bool) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return time.Time{}, false
	}
	// Fields after the command (which may hold spaces): state is field 3,
	// starttime field 22, in clock ticks since boot (USER_HZ, 100 on Linux).
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return time.Time{}, false
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 20 {
		return time.Time{}, false
	}
	ticks, err := strconv.ParseInt(f[19], 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	ps, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Time{}, false
	}
	for _, line := range strings.Split(string(ps), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			btime, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return time.Time{}, false
			}
			return time.Unix(btime, 0).Add(time.Duration(ticks) * time.Second / 100), true
		}
	}
	return time.Time{}, false
}
