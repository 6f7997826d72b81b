package gc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// deadPID is the PID of a process that has exited.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

// A gc killed with SIGKILL leaves its lock: on the same host a run takes
// it over at once, and says so; another host's lock, or a live holder's,
// still stops the run until --stale-lock.
func TestGCLockDeadHolderCases(t *testing.T) {
	me := thisHolder()
	dead := deadPID(t)
	host, _ := os.Hostname()
	other := me
	other.Host = "another-host.example"
	other.PID = dead
	deadHere := me
	deadHere.PID = dead
	reused := me // our own PID, but the lock is older than this process
	reused.Written = time.Now().Add(-time.Hour)
	otherBoot := deadHere
	otherBoot.BootID = "not-this-boot"
	otherNS := deadHere
	otherNS.PIDNamespace = "pid:[1]"
	if me.PIDNamespace == "" {
		otherNS.PIDNamespace = ""
	}

	srv, _, d := seeded(t) // one storage: each case leaves no lock behind
	for _, tc := range []struct {
		name     string
		lock     lockFile
		takeOver bool
	}{
		{"dead process on this host", lockFile{Holder: "x", lockHolder: deadHere}, true},
		{"dead process, lock of an earlier version", lockFile{Holder: fmt.Sprintf("regkeeper gc pid %d on %s (1)", dead, host)}, true},
		{"PID reused since the lock", lockFile{Holder: "x", lockHolder: reused}, true},
		{"live process on this host", lockFile{Holder: "x", lockHolder: me}, false},
		{"another host", lockFile{Holder: "x", lockHolder: other}, false},
		{"another boot", lockFile{Holder: "x", lockHolder: otherBoot}, me.BootID == ""},
		{"another PID namespace", lockFile{Holder: "x", lockHolder: otherNS}, me.PIDNamespace == ""},
		{"no holder", lockFile{Holder: "someone"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.lock.Time = time.Now().Add(-time.Minute)
			b, _ := json.Marshal(tc.lock)
			lp := filepath.Join(srv.Root, filepath.FromSlash(pathFor(lockSpec{})))
			if err := os.WriteFile(lp, b, 0o644); err != nil {
				t.Fatal(err)
			}
			defer os.Remove(lp)
			var logs bytes.Buffer
			opts := noGrace()
			opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			_, err := Run(context.Background(), d, opts)
			if tc.takeOver {
				if err != nil {
					t.Fatalf("lock not taken over: %v", err)
				}
				if !strings.Contains(logs.String(), "taking over the gc lock of a dead run on this host") {
					t.Errorf("the log does not say the lock was taken over:\n%s", logs.String())
				}
				if exists(t, srv, pathFor(lockSpec{})) {
					t.Error("lock left behind")
				}
				return
			}
			if !errors.Is(err, ErrLocked) {
				t.Fatalf("run: %v, want ErrLocked", err)
			}
			if back, _ := os.ReadFile(lp); !bytes.Equal(back, b) {
				t.Errorf("lock changed: %s", back)
			}
		})
	}
}

// TestLockHolderProcess is not a test: TestGCLockKilled runs the test
// binary again to take the lock in another process, which then waits to be
// killed.
func TestLockHolderProcess(t *testing.T) {
	root := os.Getenv("REGKEEPER_TEST_LOCK_ROOT")
	if root == "" {
		t.Skip("helper process of TestGCLockKilled")
	}
	d, err := OpenRoot(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Lock(context.Background(), d, DefaultOptions()); err != nil {
		t.Fatal(err)
	}
	fmt.Println("locked")
	time.Sleep(time.Minute)
}

// A gc killed with SIGKILL while it holds the lock: the next run on this
// host takes the lock over at once, not after --stale-lock.
func TestGCLockKilled(t *testing.T) {
	srv, _, d := seeded(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockHolderProcess$")
	cmd.Env = append(os.Environ(), "REGKEEPER_TEST_LOCK_ROOT="+srv.Root)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line := make([]byte, 64)
	n, _ := out.Read(line)
	if !strings.Contains(string(line[:n]), "locked") {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper did not take the lock: %q", line[:n])
	}
	if _, err := Run(context.Background(), d, noGrace()); !errors.Is(err, ErrLocked) {
		t.Fatalf("run while the holder lives: %v, want ErrLocked", err)
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	cmd.Wait()
	var logs bytes.Buffer
	opts := noGrace()
	opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	if _, err := Run(context.Background(), d, opts); err != nil {
		t.Fatalf("run after the holder was killed: %v", err)
	}
	if !strings.Contains(logs.String(), fmt.Sprintf("pid=%d", cmd.Process.Pid)) {
		t.Errorf("the log does not name the dead holder %d:\n%s", cmd.Process.Pid, logs.String())
	}
}
