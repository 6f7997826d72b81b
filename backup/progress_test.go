package backup

import (
	"bytes"
	"context"
	"errors"
	"math"
	"regexp"
	"strconv"
	"sync"
	"testing"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"

	"github.com/regkeeper/regkeeper/internal/progress"
	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
)

// frame is one drawing of the backup bar: "backup 12/12 images 100% |███| (1.2/1.2 MiB, 3 MiB/s)".
var frame = regexp.MustCompile(`backup (\d+)/(\d+) images +(\d+)% \|[^|]*\| \(([0-9.]+)( [KMG]?i?B)?/([0-9.]+) ([KMG]?i?B)[,)]`)

// bytesOf reads a drawn size back ("1.2", " MiB").
func bytesOf(t *testing.T, num, unit string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(num, 64)
	if err != nil {
		t.Fatalf("size %q: %v", num, err)
	}
	scale := map[string]float64{"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}[unit]
	if scale == 0 {
		t.Fatalf("unit %q is not a byte unit", unit)
	}
	return v * scale
}

// With progress on, a backup of the sample estate draws a bar in bytes
// that ends at the bytes it wrote, every image done; with progress off (or
// auto, on something that is not a terminal) it draws nothing.
func TestBackupProgress(t *testing.T) {
	srv, _ := regtest.Seeded(t, embedded.Options{})

	var buf bytes.Buffer
	opts := testOptions()
	opts.Progress = progress.New(&buf, progress.Always)
	res := backup(t, srv.Host, t.TempDir(), opts)
	if res.BytesWritten == 0 {
		t.Fatalf("backup wrote nothing: %+v", res)
	}
	frames := frame.FindAllStringSubmatch(buf.String(), -1)
	if len(frames) == 0 {
		t.Fatalf("no bar drawn in bytes with an image count:\n%q", buf.String())
	}
	last := frames[len(frames)-1]
	t.Logf("%d frames, last %q", len(frames), last[0])
	done, total, pct := last[1], last[2], last[3]
	if done != total || total == "0" || pct != "100" {
		t.Errorf("last frame %q: want every image done and 100%%", last[0])
	}
	doneUnit := last[5]
	if doneUnit == "" {
		doneUnit = " " + last[7]
	}
	if last[4]+doneUnit != last[6]+" "+last[7] {
		t.Errorf("last frame %q: bytes done differ from the total", last[0])
	}
	// The drawn total is rounded to 2 significant digits (at most 5%).
	got, want := bytesOf(t, last[6], last[7]), float64(res.BytesWritten)
	if math.Abs(got-want) > 0.05*want {
		t.Errorf("last frame %q: total %.0f bytes, but the backup wrote %d", last[0], got, res.BytesWritten)
	}

	for _, mode := range []progress.Mode{progress.Never, progress.Auto} {
		var off bytes.Buffer
		opts := testOptions()
		opts.Progress = progress.New(&off, mode)
		res := backup(t, srv.Host, t.TempDir(), opts)
		if res.BytesWritten == 0 || off.Len() != 0 {
			t.Errorf("progress %s: wrote %d bytes, drew %q; want bytes written and nothing drawn", mode, res.BytesWritten, off.String())
		}
	}
}

// stallingDriver holds the first blob write until the run's context ends,
// as a slow object store would; a blob write made with a context that
// cannot end is an error.
type stallingDriver struct {
	storagedriver.StorageDriver
	t       *testing.T
	writing chan struct{}
	once    sync.Once
}

func (d *stallingDriver) Writer(ctx context.Context, p string, append bool) (storagedriver.FileWriter, error) {
	if ctx.Done() == nil {
		d.t.Errorf("blob %s written with a context a cancelled run does not end", p)
		return nil, errors.New("no run context")
	}
	stall := false
	d.once.Do(func() { stall = true; close(d.writing) })
	if stall {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return d.StorageDriver.Writer(ctx, p, append)
}

// A cancelled backup to object storage stops at its storage call in
// flight, and still records the run as interrupted and releases the lock.
func TestBackupDriverCancelled(t *testing.T) {
	srv, _ := regtest.Seeded(t, embedded.Options{})
	d := &stallingDriver{StorageDriver: inmemory.New(), t: t, writing: make(chan struct{})}
	l := DriverLayout(d, "inmemory://backup")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { <-d.writing; cancel() }()
	_, err := RunLayout(ctx, srv.Host, l, testOptions())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled run returned %v, want context.Canceled", err)
	}
	snaps, err := l.ReadSnapshots()
	if err != nil || len(snaps) != 1 {
		t.Fatalf("snapshots after the cancelled run: %v, %v", snaps, err)
	}
	if got := snaps[0].Info(); got.Status != SnapshotIncomplete || got.Reason != "interrupted" {
		t.Errorf("cancelled run recorded as %s (%s), want incomplete (interrupted)", got.Status, got.Reason)
	}
	// The lock was released: the next run takes it and finishes.
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	res, err := RunLayout(ctx2, srv.Host, l, testOptions())
	if err != nil || !res.Complete {
		t.Fatalf("run after the cancelled one: complete %v, %v", res != nil && res.Complete, err)
	}
}
