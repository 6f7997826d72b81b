package gc

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/redis/go-redis/v9"

	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
	"github.com/regkeeper/regkeeper/internal/testbed/stall"
)

// The proofs of the online protocol's protections (README, "Proofs"):
// each test here fails when the protection it names is removed
// (scripts/mutants builds gc without it). Where a protection covers a
// request in flight, the registry itself holds the request between its
// checks and its writes (internal/testbed/stall wraps its storage driver),
// while gc passes the step the protection is for.

// heldPush is a rebuild push (a new config on a dead image's layers: the
// registry finds the layers and uploads nothing) that the registry holds
// just before it writes the new manifest's revision link, after every
// check of the manifest PUT.
type heldPush struct {
	h    *stall.Hold
	done chan struct{}
	once sync.Once
}

// startHeldPush starts the push and returns once the registry holds it.
func startHeldPush(t *testing.T, host string, st *stall.Storage, d stormImage, tag string, log *pushLog) *heldPush {
	t.Helper()
	img, err := rebuild(d, tag)
	if err != nil {
		t.Fatal(err)
	}
	dg, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	p := &heldPush{h: st.Arm(stall.PutContent, stall.Suffix(d.repo+"/_manifests/revisions/sha256/"+dg.Hex+"/link")), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		push(context.Background(), t, host, pushRebuild, d, tag, log)
	}()
	select {
	case <-p.h.Reached():
	case <-p.done:
		t.Fatalf("the push ended without reaching its revision link: refused %v", log.refused)
	}
	return p
}

// releaseInSettle releases the push a moment after gc quarantined, that
// is during the settle; a run that reaches the re-scan first (no settle)
// releases it right after the re-scan has read the storage, and waits for
// it to end before repairing and purging.
func (p *heldPush) pause(step string) {
	switch step {
	case "quarantined":
		time.AfterFunc(300*time.Millisecond, p.h.Release)
	case "rescan":
		p.wait()
	}
}

// wait releases the push and waits for the registry's answer.
func (p *heldPush) wait() {
	p.h.Release()
	<-p.done
}

// The settle: a push that checked the layers of a dead image before gc
// deleted their links and quarantined them, and writes its manifest's
// revision link and tag during the settle, is re-scanned and pulls. Without
// the settle, the re-scan reads the repository before the write.
func TestProofSettle(t *testing.T) {
	t.Run("filesystem", func(t *testing.T) { testProofSettle(t, embedded.Options{}) })
	t.Run("s3", func(t *testing.T) {
		m := startMinIO(t, "settle")
		testProofSettle(t, embedded.Options{Storage: m.StorageYAML("settle")})
	})
}

func testProofSettle(t *testing.T, reg embedded.Options) {
	st := stall.New()
	reg.WrapStorage = st.Wrap
	srv := regtest.Registry(t, reg)
	e := pushStormEstate(t, srv.Host, 1, 2, 3)
	d, err := Open(context.Background(), srv.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	dead := e.dead()[0]
	log := &pushLog{}
	opts := proofOptions()
	opts.Settle = 3 * time.Second
	var held *heldPush
	opts.pause = func(step string) {
		if step == "marked" {
			held = startHeldPush(t, srv.Host, st, dead, "held", log)
			return
		}
		held.pause(step)
	}
	rep, err := Run(context.Background(), d, opts)
	if held != nil {
		held.wait()
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(log.accepted) != 1 {
		t.Fatalf("the held push was not accepted: %v", log.refused)
	}
	layers, _ := dead.img.Layers()
	if rep.BlobsRestored < len(layers) {
		t.Errorf("gc restored %d blobs, want the %d layers the held push needs (did gc quarantine them?)", rep.BlobsRestored, len(layers))
	}
	if lost := verify(t, e, log); lost > 0 {
		t.Errorf("the push held across the quarantine is lost")
	}
}

// proofOptions are aged() with no limit on the share deleted (the
// estates here are two thirds dead).
func proofOptions() Options {
	o := aged()
	o.MaxDeleteRatio = 1
	return o
}

// The redis cache's second clear: a request that read a dead layer from
// storage before the quarantine (a HEAD on a cold cache) and puts it in
// the cache after the first clear leaves a stale "present" that the
// second clear removes. Without it, a later push of an image on that
// layer is accepted from the cache without the layer and does not pull.
func TestProofRedisSecondClear(t *testing.T) {
	addr := startRedis(t)
	st := stall.New()
	srv := regtest.Registry(t, embedded.Options{BlobDescriptorCache: CacheRedis, RedisAddr: addr, WrapStorage: st.Wrap})
	e := pushStormEstate(t, srv.Host, 1, 2, 3)
	ctx := context.Background()
	d, err := Open(ctx, srv.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	rc := redis.NewClient(&redis.Options{Addr: addr})
	defer rc.Close()
	dead := e.dead()[0]
	layers, _ := dead.img.Layers()
	layer, _ := layers[0].Digest()
	opts := proofOptions()
	opts.Settle = 100 * time.Millisecond
	if opts.Registry, err = ReadSettings(srv.ConfigFile); err != nil {
		t.Fatal(err)
	}
	var h *stall.Hold
	head := make(chan int, 1)
	opts.pause = func(step string) {
		switch step {
		case "marked":
			// A cold cache (a restarted redis): the HEAD reads storage.
			if err := rc.FlushAll(ctx).Err(); err != nil {
				t.Error(err)
			}
			h = st.Arm(stall.Stat, stall.Suffix("/blobs/sha256/"+layer.Hex[:2]+"/"+layer.Hex+"/data"))
			go func() {
				req, _ := http.NewRequest(http.MethodHead, fmt.Sprintf("%s/v2/%s/blobs/%s", srv.URL, dead.repo, layer), nil)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					head <- 0
					return
				}
				resp.Body.Close()
				head <- resp.StatusCode
			}()
			<-h.Reached()
		case "quarantined":
			// gc has quarantined the layer and cleared the cache; the HEAD
			// now answers from what it read before and caches it.
			h.Release()
			if code := <-head; code != http.StatusOK {
				t.Errorf("the held HEAD answered %d, want 200 (it read storage before the quarantine)", code)
			}
		}
	}
	rep, err := Run(ctx, d, opts)
	if h != nil {
		h.Release()
	}
	if err != nil {
		t.Fatal(err)
	}
	if rep.BlobsDeleted == 0 {
		t.Fatalf("gc deleted nothing: %+v", rep)
	}
	if _, err := d.Stat(ctx, pathFor(blobDataSpec{digest.Digest(layer.String())})); !isNotFound(err) {
		t.Fatalf("gc did not delete the dead layer %s: %v", layer, err)
	}
	log := &pushLog{}
	push(ctx, t, srv.Host, pushRebuild, dead, "after-gc", log)
	if len(log.accepted) != 1 {
		t.Fatalf("the push after gc was refused: %v", log.refused)
	}
	if lost := verify(t, e, log); lost > 0 {
		t.Errorf("a push after gc was accepted from a stale cache entry and does not pull")
	}
}

// restoreLeftovers: a crashed run's quarantine holds the blobs of an image
// that the storage names again through links older than the quarantine's
// start (a repository put back from a copy that keeps its files' times,
// as rsync -a does), so no young reference names them: the next run's
// mark keeps them and it restores them before the purge.
func TestProofRestoreLeftovers(t *testing.T) {
	t.Run("filesystem", func(t *testing.T) { testProofRestoreLeftovers(t, embedded.Options{}) })
	t.Run("s3", func(t *testing.T) {
		m := startMinIO(t, "leftovers")
		testProofRestoreLeftovers(t, embedded.Options{Storage: m.StorageYAML("leftovers")})
	})
}

func testProofRestoreLeftovers(t *testing.T, reg embedded.Options) {
	srv := regtest.Registry(t, reg)
	e := pushStormEstate(t, srv.Host, 1, 2, 3)
	ctx := context.Background()
	d, err := Open(ctx, srv.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	dead := e.dead()[0]
	manifest, _ := dead.img.RawManifest()
	pm, _, err := readManifest(ctx, d, nil, digest.FromBytes(manifest))
	if err != nil || pm == nil {
		t.Fatalf("reading %s: %v", dead.digest, err)
	}

	// The crashed run: dies when it starts to purge, its quarantine full.
	opts := proofOptions()
	opts.Settle = 0
	opts.beforeDelete = func(p string) error {
		if strings.Contains(p, "regkeeper-quarantine/sha256") {
			return errCrash
		}
		return nil
	}
	if _, err := Run(ctx, d, opts); err == nil || !strings.Contains(err.Error(), errCrash.Error()) {
		t.Fatalf("first run: %v, want the crash", err)
	}
	dg := digest.Digest(dead.digest.String())
	if _, err := d.Stat(ctx, pathFor(quarantineDataSpec{dg})); err != nil {
		t.Fatalf("the crashed run did not quarantine %s: %v", dg, err)
	}

	// The repository's links to the dead image come back, older than the
	// quarantine's start.
	links := map[string]digest.Digest{
		pathFor(tagCurrentSpec{dead.repo, "restored"}):       dg,
		pathFor(tagIndexLinkSpec{dead.repo, "restored", dg}): dg,
		pathFor(revisionLinkSpec{dead.repo, dg}):             dg,
		pathFor(layerLinkSpec{dead.repo, pm.Config.Digest}):  pm.Config.Digest,
	}
	for _, l := range pm.Layers {
		links[pathFor(layerLinkSpec{dead.repo, l.Digest})] = l.Digest
	}
	for p, dg := range links {
		if err := d.PutContent(ctx, p, []byte(dg.String())); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(1100 * time.Millisecond) // a later second on any storage's clock
	since := pathFor(quarantineSinceSpec{})
	if err := d.PutContent(ctx, since, []byte("moved after the links")); err != nil {
		t.Fatal(err)
	}

	rep, err := Run(ctx, d, proofOptions())
	if err != nil {
		t.Fatal(err)
	}
	if want := 2 + len(pm.Layers); rep.BlobsRestored < want {
		t.Errorf("the next run restored %d blobs, want the image's %d", rep.BlobsRestored, want)
	}
	if rep.LinksRestored != 0 {
		t.Errorf("the re-scan wrote %d links: the test means no young reference names the image", rep.LinksRestored)
	}
	checkPull(t, srv.Host, dead.repo+":restored", dead.digest)
	e.pullTags(t)
}

// #24 item 8: a push that raced a crashed run in its last moments (it
// checked before the quarantine and writes after the crash) is still
// writing when the next run starts; that run has nothing new to delete,
// and still settles and re-scans before purging the crashed run's
// quarantine.
func TestProofLeftoverQuarantineSettles(t *testing.T) {
	st := stall.New()
	srv := regtest.Registry(t, embedded.Options{WrapStorage: st.Wrap})
	e := pushStormEstate(t, srv.Host, 1, 2, 3)
	ctx := context.Background()
	d, err := Open(ctx, srv.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	log := &pushLog{}
	var held *heldPush
	type crash struct{}
	opts := proofOptions()
	opts.pause = func(step string) {
		switch step {
		case "marked":
			held = startHeldPush(t, srv.Host, st, e.dead()[0], "raced", log)
		case "quarantined":
			panic(crash{}) // killed right after the quarantine
		}
	}
	crashed := false
	func() {
		defer func() {
			r := recover()
			if r != nil && r != (crash{}) {
				panic(r)
			}
			crashed = r != nil
		}()
		_, err = Run(ctx, d, opts)
	}()
	if !crashed {
		t.Fatalf("the first run did not crash: %v", err)
	}

	// The next run, at once, with the CLI's defaults: the dead images went
	// with the crashed run, everything else is within the grace.
	next := DefaultOptions()
	next.MaxDeleteRatio = 1
	next.Settle = 3 * time.Second
	next.pause = held.pause
	rep, err := Run(ctx, d, next)
	held.wait()
	if err != nil {
		t.Fatal(err)
	}
	if rep.ManifestsDeleted != 0 || rep.LayerLinksDeleted != 0 {
		t.Fatalf("the next run deleted %d manifests, %d layer links; the test wants nothing new to delete", rep.ManifestsDeleted, rep.LayerLinksDeleted)
	}
	if rep.BlobsDeleted == 0 {
		t.Errorf("the next run purged nothing of the crashed run's quarantine")
	}
	if len(log.accepted) != 1 {
		t.Fatalf("the raced push was not accepted: %v", log.refused)
	}
	if lost := verify(t, e, log); lost > 0 {
		t.Errorf("the push that raced the crashed run is lost")
	}
}

// The re-reads, on the real clock with the CLI's defaults (the since-time
// path `regkeeper gc` takes): on storage older than the grace, a rollback
// (a dead manifest tagged again) and a rebuild on a dead image's layers
// during the run are kept by the re-reads before the deletions, so gc
// never deletes their links or quarantines their blobs, and has nothing to
// repair.
func TestProofRereadsRealClock(t *testing.T) {
	srv := regtest.Registry(t, embedded.Options{})
	e := pushStormEstate(t, srv.Host, 1, 2, 3)
	ctx := context.Background()
	// The estate was pushed two hours ago.
	old := time.Now().Add(-2 * time.Hour)
	if err := filepath.Walk(srv.Root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chtimes(p, old, old)
	}); err != nil {
		t.Fatal(err)
	}
	d, err := Open(ctx, srv.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	dead := e.dead()
	log := &pushLog{}
	opts := DefaultOptions()
	opts.MaxDeleteRatio = 1
	var mu sync.Mutex
	deleted := map[string]bool{}
	opts.beforeDelete = func(p string) error {
		mu.Lock()
		deleted[p] = true
		mu.Unlock()
		return nil
	}
	opts.pause = func(step string) {
		if step == "marked" {
			push(ctx, t, srv.Host, pushRollback, dead[0], "rollback", log)
			push(ctx, t, srv.Host, pushRebuild, dead[1], "rebuild", log)
		}
	}
	rep, err := Run(ctx, d, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(log.accepted) != 2 {
		t.Fatalf("accepted %d pushes, refused %v", len(log.accepted), log.refused)
	}
	if rep.ManifestsDeleted == 0 || rep.BlobsDeleted == 0 {
		t.Fatalf("gc deleted nothing on storage older than the grace: %+v", rep)
	}
	var touched []string
	check := func(p string) {
		if deleted[p] {
			touched = append(touched, p)
		}
	}
	check(pathFor(revisionLinkSpec{dead[0].repo, digest.Digest(dead[0].digest.String())}))
	for _, im := range dead[:2] {
		layers, _ := im.img.Layers()
		for _, l := range layers {
			ld, _ := l.Digest()
			check(pathFor(layerLinkSpec{im.repo, digest.Digest(ld.String())}))
			check(pathFor(blobDataSpec{digest.Digest(ld.String())}))
		}
	}
	if len(touched) > 0 {
		t.Errorf("gc deleted what pushes during the run had referenced (the re-reads did not keep them): %v", touched)
	}
	if rep.BlobsRestored+rep.LinksRestored != 0 {
		t.Errorf("gc had to repair %d blobs and %d links: the re-reads should have kept them", rep.BlobsRestored, rep.LinksRestored)
	}
	if lost := verify(t, e, log); lost > 0 {
		t.Errorf("%d accepted pushes lost", lost)
	}
}
