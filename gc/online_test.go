package gc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/pull"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
)

// The online protocol's tests: a push storm during a run (filesystem and
// MinIO), a push in each window between the steps, a crash in the middle
// of the quarantine then a re-run. The registry serving the storage is the
// real one (distribution's handlers.NewApp, in-process); the clients are
// go-containerregistry's, as crane uses it.

// stormImage is an image pushed to the registry, with its layers' bytes
// kept in memory so that a client can push them again.
type stormImage struct {
	repo, tag string
	digest    v1.Hash
	img       v1.Image
	live      bool
}

// stormEstate: repos x tags, each tag pushed versions times, so all but the
// last version of each tag are dead (untagged), with their own layers.
type stormEstate struct {
	host   string
	images []stormImage
}

func pushStormEstate(t *testing.T, host string, repos, tags, versions int) *stormEstate {
	t.Helper()
	e := &stormEstate{host: host}
	perRepo := make([][]stormImage, repos)
	errs := make([]error, repos)
	var wg sync.WaitGroup
	for r := range repos {
		wg.Add(1)
		go func() { // one client per repository, as teams push
			defer wg.Done()
			for tg := range tags {
				for v := range versions {
					img, err := random.Image(512, 2)
					if err != nil {
						errs[r] = err
						return
					}
					im := stormImage{repo: fmt.Sprintf("storm/r%d", r), tag: fmt.Sprintf("t%d", tg), img: img, live: v == versions-1}
					if im.digest, err = img.Digest(); err != nil {
						errs[r] = err
						return
					}
					if err := remote.Write(ref(t, host, im.repo+":"+im.tag), img); err != nil {
						errs[r] = err
						return
					}
					perRepo[r] = append(perRepo[r], im)
				}
			}
		}()
	}
	wg.Wait()
	for r := range repos {
		if errs[r] != nil {
			t.Fatalf("pushing the estate: %v", errs[r])
		}
		e.images = append(e.images, perRepo[r]...)
	}
	return e
}

func ref(t testing.TB, host, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(host+"/"+s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (e *stormEstate) dead() []stormImage {
	var out []stormImage
	for _, im := range e.images {
		if !im.live {
			out = append(out, im)
		}
	}
	return out
}

// pullTags pulls every live tag of the estate, in full.
func (e *stormEstate) pullTags(t *testing.T) {
	t.Helper()
	for _, im := range e.images {
		if im.live {
			checkPull(t, e.host, im.repo+":"+im.tag, im.digest)
		}
	}
}

// checkPull pulls ref in full (every blob read and verified) and checks its
// digest; it returns false (and fails the test) when it does not pull.
func checkPull(t *testing.T, host, s string, want v1.Hash) bool {
	t.Helper()
	r := ref(t, host, s)
	if err := pull.Pull(context.Background(), r); err != nil {
		t.Errorf("pulling %s: %v", s, err)
		return false
	}
	desc, err := remote.Head(r)
	if err != nil || desc.Digest != want {
		t.Errorf("%s: digest %v (%v), want %s", s, desc, err, want)
		return false
	}
	return true
}

// A push a client makes while gc runs, in one of the three ways that race a
// collector.
const (
	pushRollback = "rollback" // tag a dead manifest again, by digest (crane tag)
	pushRebuild  = "rebuild"  // a new image on a dead image's layers; HEAD finds them, no upload
	pushUpload   = "upload"   // upload a dead image's layers again, then an image on them
)

type accepted struct {
	kind, ref string
	digest    v1.Hash
	at        time.Time
}

// pushLog records what the registry accepted.
type pushLog struct {
	mu       sync.Mutex
	accepted []accepted
	refused  map[string]int
}

// count is the number of pushes accepted so far.
func (l *pushLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.accepted)
}

func (l *pushLog) add(kind, ref string, dg v1.Hash, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.refused == nil {
		l.refused = map[string]int{}
	}
	if err != nil {
		l.refused[kind]++
		return
	}
	l.accepted = append(l.accepted, accepted{kind, ref, dg, time.Now()})
}

// push makes one push of a kind on a dead image, under a new tag, and logs
// whether the registry accepted it.
func push(ctx context.Context, t testing.TB, host, kind string, d stormImage, tag string, log *pushLog) {
	var dg v1.Hash
	err := func() error {
		switch kind {
		case pushRollback:
			desc, err := remote.Get(ref(t, host, d.repo+"@"+d.digest.String()), remote.WithContext(ctx))
			if err != nil {
				return err
			}
			dg = desc.Digest
			return remote.Tag(ref(t, host, d.repo+":"+tag).(name.Tag), desc, remote.WithContext(ctx))
		case pushUpload:
			layers, err := d.img.Layers()
			if err != nil {
				return err
			}
			for _, l := range layers {
				if err := uploadBlob(ctx, host, d.repo, l); err != nil {
					return err
				}
			}
			fallthrough
		case pushRebuild:
			img, err := rebuild(d, tag)
			if err != nil {
				return err
			}
			if dg, err = img.Digest(); err != nil {
				return err
			}
			return remote.Write(ref(t, host, d.repo+":"+tag), img, remote.WithContext(ctx))
		}
		return fmt.Errorf("unknown push %s", kind)
	}()
	log.add(kind, d.repo+":"+tag, dg, err)
}

// rebuild is the image a rebuild push makes: a new config on d's layers.
func rebuild(d stormImage, tag string) (v1.Image, error) {
	layers, err := d.img.Layers()
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		return nil, err
	}
	return mutate.Config(img, v1.Config{Labels: map[string]string{"build": tag}})
}

// uploadBlob uploads a layer whether or not the registry has it (a
// monolithic POST then PUT), as a client that does not HEAD first does.
func uploadBlob(ctx context.Context, host, repo string, l v1.Layer) error {
	rc, err := l.Compressed()
	if err != nil {
		return err
	}
	body, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return err
	}
	return uploadBytes(ctx, host, repo, body)
}

// uploadBytes uploads a blob (a monolithic POST then PUT).
func uploadBytes(ctx context.Context, host, repo string, body []byte) error {
	dg := digest.FromBytes(body)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+host+"/v2/"+repo+"/blobs/uploads/", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("starting an upload: %s", resp.Status)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		return err
	}
	loc = (&url.URL{Scheme: "http", Host: host}).ResolveReference(loc)
	q := loc.Query()
	q.Set("digest", dg.String())
	loc.RawQuery = q.Encode()
	req, _ = http.NewRequestWithContext(ctx, http.MethodPut, loc.String(), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("finishing the upload of %s: %s", dg, resp.Status)
	}
	return nil
}

// verify pulls every accepted push and every tag of the estate, and returns
// the number of accepted pushes that do not pull.
func verify(t *testing.T, e *stormEstate, log *pushLog) (lost int) {
	t.Helper()
	for _, a := range log.accepted {
		if !checkPull(t, e.host, a.ref, a.digest) {
			lost++
			t.Errorf("lost: a %s push accepted at %s", a.kind, a.at.Format(time.StampMilli))
		}
	}
	e.pullTags(t)
	return lost
}

// aged are the options of a run with the CLI's defaults on storage older
// than the grace: the clock says two hours later. Settle is shortened to
// keep the suite fast (the registry here is in-process).
func aged() Options {
	o := DefaultOptions()
	o.Settle = time.Second
	o.Now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	return o
}

// storm runs gc while clients push, from before it starts until tail after
// it ends. Each push revives a dead image no push revived before (a push on
// a revived image is safe whatever gc does), and gc waits after its mark
// and after deleting links until each client has had a push accepted: the
// windows where only the re-scan saves a push (it checked what gc then
// deletes) hold 2 x clients pushes or more in every run.
func storm(t *testing.T, host string, d storagedriver.StorageDriver, e *stormEstate, clients int, opts Options, tail time.Duration) {
	t.Helper()
	dead := e.dead()
	rand.New(rand.NewSource(1)).Shuffle(len(dead), func(i, j int) { dead[i], dead[j] = dead[j], dead[i] })
	queue := make(chan stormImage, len(dead))
	for _, im := range dead {
		queue <- im
	}
	close(queue)
	log := &pushLog{}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			kinds := []string{pushRollback, pushRebuild, pushUpload}
			rnd := rand.New(rand.NewSource(int64(c)))
			for i := 0; ctx.Err() == nil; i++ {
				im, ok := <-queue
				if !ok { // every dead image revived: any of them again
					im = dead[rnd.Intn(len(dead))]
				}
				push(ctx, t, host, kinds[(c+i)%3], im, fmt.Sprintf("c%d-%d", c, i), log)
			}
		}()
	}
	inWindows := 0
	opts.pause = func(step string) {
		if step != "marked" && step != "links-deleted" {
			return
		}
		from := log.count()
		for deadline := time.Now().Add(time.Minute); log.count() < from+clients; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Errorf("at %s: %d pushes accepted in a minute, want %d", step, log.count()-from, clients)
				break
			}
		}
		inWindows += log.count() - from
	}
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	rep, err := Run(context.Background(), d, opts)
	end := time.Now()
	time.Sleep(tail)
	stop()
	wg.Wait()
	if err != nil {
		t.Fatalf("gc during the storm: %v", err)
	}
	if rep.BlobsDeleted == 0 || rep.ManifestsDeleted == 0 {
		t.Fatalf("gc deleted nothing: %+v", rep)
	}
	// Requests cancelled by stop() are neither accepted nor refused.
	during := map[string]int{}
	n := 0
	for _, a := range log.accepted {
		if !a.at.Before(start) && !a.at.After(end) {
			during[a.kind]++
			n++
		}
	}
	lost := verify(t, e, log)
	t.Logf("storm on %s: gc ran %.1fs (settle %s); %d pushes accepted during the run (%v; %d while gc waited after its mark and its link deletions), %d in all; refused (visibly): %v; lost: %d; "+
		"gc deleted %d manifests, %d blobs, restored %d blobs and %d links from its quarantine",
		d.Name(), end.Sub(start).Seconds(), opts.Settle, n, during, inWindows, len(log.accepted), log.refused, lost,
		rep.ManifestsDeleted, rep.BlobsDeleted, rep.BlobsRestored, rep.LinksRestored)
	if n == 0 {
		t.Error("no push was accepted during the run")
	}
}

func TestGCStorm(t *testing.T) {
	srv := regtest.Registry(t, embedded.Options{})
	e := pushStormEstate(t, srv.Host, 4, 4, 4)
	d, err := Open(context.Background(), srv.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	storm(t, srv.Host, d, e, 4, aged(), 100*time.Millisecond)
}

func TestGCStormS3(t *testing.T) {
	const bucket = "registry"
	m := startMinIO(t, bucket)
	srv := regtest.Registry(t, embedded.Options{Storage: m.StorageYAML(bucket)})
	e := pushStormEstate(t, srv.Host, 3, 3, 3)
	d, err := Open(context.Background(), srv.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	storm(t, srv.Host, d, e, 4, aged(), 100*time.Millisecond)
}

// A push of each kind in each window between the steps of a run: each is
// either refused by the registry or pulls afterwards.
func TestGCPushInEachWindow(t *testing.T) {
	windows(t, func(t *testing.T, step string) embedded.Options { return embedded.Options{} })
}

func TestGCPushInEachWindowS3(t *testing.T) {
	m := startMinIO(t, "setup")
	windows(t, func(t *testing.T, step string) embedded.Options {
		if err := m.CreateBucket(context.Background(), step); err != nil {
			t.Fatal(err)
		}
		return embedded.Options{Storage: m.StorageYAML(step)}
	})
}

func windows(t *testing.T, registry func(t *testing.T, step string) embedded.Options) {
	for _, step := range []string{"marked", "links-deleted", "quarantined", "rescan"} {
		t.Run(step, func(t *testing.T) {
			srv := regtest.Registry(t, registry(t, step))
			e := pushStormEstate(t, srv.Host, 1, 2, 3)
			d, err := Open(context.Background(), srv.ConfigFile)
			if err != nil {
				t.Fatal(err)
			}
			dead := e.dead()
			log := &pushLog{}
			opts := aged()
			opts.Settle = 100 * time.Millisecond
			paused := false
			opts.pause = func(s string) {
				if s != step {
					return
				}
				paused = true
				for i, kind := range []string{pushRollback, pushRebuild, pushUpload} {
					push(context.Background(), t, srv.Host, kind, dead[i], "w-"+kind, log)
				}
			}
			rep, err := Run(context.Background(), d, opts)
			if err != nil {
				t.Fatal(err)
			}
			if !paused {
				t.Fatalf("gc never reached step %s", step)
			}
			if lost := verify(t, e, log); lost > 0 {
				t.Errorf("%d accepted pushes lost", lost)
			}
			kinds := map[string]bool{}
			for _, a := range log.accepted {
				kinds[a.kind] = true
			}
			// A rebuild always goes through: its client uploads what the
			// registry no longer has.
			if !kinds[pushRebuild] || !kinds[pushUpload] {
				t.Errorf("accepted %v, want rebuild and upload at least", kinds)
			}
			t.Logf("window %s: accepted %d %v, refused %v; gc restored %d blobs, %d links", step, len(log.accepted), kinds, log.refused, rep.BlobsRestored, rep.LinksRestored)
		})
	}
}

// A run that crashes in the middle of its quarantine, after a push that
// needs blobs it quarantined and links it deleted; the next run finishes
// the job: what the push needs comes back, the rest is purged.
func TestGCQuarantineCrashThenRerun(t *testing.T) {
	t.Run("current layout", func(t *testing.T) { testQuarantineCrashThenRerun(t, embedded.Options{}, false) })
	// A quarantine an earlier build left (sha256/<hex>/data) is moved to the
	// current layout and resolved the same way.
	t.Run("earlier layout", func(t *testing.T) { testQuarantineCrashThenRerun(t, embedded.Options{}, true) })
}

func testQuarantineCrashThenRerun(t *testing.T, reg embedded.Options, legacy bool) {
	srv := regtest.Registry(t, reg)
	e := pushStormEstate(t, srv.Host, 1, 2, 3)
	d, err := Open(context.Background(), srv.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	dead := e.dead()
	log := &pushLog{}
	opts := aged()
	opts.Settle = 0
	opts.pause = func(s string) {
		if s == "marked" {
			// HEAD finds the layers: the push validates against links the
			// run is about to delete and blobs it is about to quarantine.
			push(context.Background(), t, srv.Host, pushRebuild, dead[0], "before-crash", log)
		}
	}
	moved := 0
	opts.beforeDelete = func(p string) error {
		if strings.HasSuffix(p, "/data") && strings.Contains(p, "/blobs/") {
			if moved++; moved > 5 {
				return errCrash
			}
		}
		return nil
	}
	first, err := Run(context.Background(), d, opts)
	if err == nil || !strings.Contains(err.Error(), errCrash.Error()) {
		t.Fatalf("first run: %v, want the crash", err)
	}
	if len(log.accepted) != 1 {
		t.Fatalf("the push before the crash was not accepted: %v", log.refused)
	}
	if _, err := d.Stat(context.Background(), pathFor(quarantineSinceSpec{})); err != nil {
		t.Fatalf("the crashed run left no quarantine: %v", err)
	}
	if legacy {
		toLegacyQuarantine(t, d)
	}
	second, err := Run(context.Background(), d, aged())
	if err != nil {
		t.Fatal(err)
	}
	if lost := verify(t, e, log); lost > 0 {
		t.Errorf("%d accepted pushes lost", lost)
	}
	if _, err := d.Stat(context.Background(), pathFor(quarantineSpec{})); !isNotFound(err) {
		t.Errorf("quarantine left after the second run: %v", err)
	}
	if second.BlobsRestored+second.LinksRestored == 0 {
		t.Errorf("the second run restored nothing: %+v", second)
	}
	// Every dead blob nothing needs is gone from storage, once.
	third, err := Run(context.Background(), d, aged())
	if err != nil {
		t.Fatal(err)
	}
	if third.BlobsDeleted != 0 {
		t.Errorf("a third run still deleted %d blobs", third.BlobsDeleted)
	}
	t.Logf("crashed run: %d manifests, %d layer links deleted; second: %d blobs deleted, %d blobs and %d links restored",
		first.ManifestsDeleted, first.LayerLinksDeleted, second.BlobsDeleted, second.BlobsRestored, second.LinksRestored)
}

// toLegacyQuarantine moves every quarantined blob to the layout of earlier
// builds: regkeeper-quarantine/sha256/<hex>/data.
func toLegacyQuarantine(t *testing.T, d storagedriver.StorageDriver) {
	t.Helper()
	ctx := context.Background()
	root := pathFor(quarantineBlobsSpec{digest.SHA256})
	var files []string
	if err := d.Walk(ctx, root, func(fi storagedriver.FileInfo) error {
		if !fi.IsDir() {
			files = append(files, fi.Path())
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("the crashed run quarantined nothing")
	}
	for _, f := range files {
		if err := d.Move(ctx, f, path.Join(root, path.Base(f), "data")); err != nil {
			t.Fatal(err)
		}
	}
}

// A run interrupted between its quarantine and its purge (Ctrl-C during the
// settle) repairs the pushes it broke before it returns, and leaves its
// quarantine for the next run.
func TestGCInterruptedAfterQuarantineRepairs(t *testing.T) {
	srv := regtest.Registry(t, embedded.Options{})
	e := pushStormEstate(t, srv.Host, 1, 2, 3)
	d, err := Open(context.Background(), srv.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	ctx, interrupt := context.WithCancel(context.Background())
	defer interrupt()
	log := &pushLog{}
	opts := aged()
	opts.Settle = time.Minute
	opts.pause = func(s string) {
		switch s {
		case "marked":
			push(context.Background(), t, srv.Host, pushRebuild, e.dead()[0], "before-interrupt", log)
		case "quarantined":
			interrupt()
		}
	}
	rep, err := Run(ctx, d, opts)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("run: %v, want it interrupted", err)
	}
	if len(log.accepted) != 1 || rep.BlobsRestored == 0 {
		t.Fatalf("accepted %d pushes, restored %d blobs before leaving", len(log.accepted), rep.BlobsRestored)
	}
	if lost := verify(t, e, log); lost > 0 {
		t.Errorf("%d accepted pushes do not pull after the interrupted run", lost)
	}
	if _, err := d.Stat(context.Background(), pathFor(quarantineSinceSpec{})); err != nil {
		t.Errorf("the interrupted run did not leave its quarantine: %v", err)
	}
	next, err := Run(context.Background(), d, aged())
	if err != nil {
		t.Fatal(err)
	}
	if next.BlobsDeleted == 0 {
		t.Errorf("the next run purged nothing: %+v", next)
	}
	if lost := verify(t, e, log); lost > 0 {
		t.Errorf("%d accepted pushes lost", lost)
	}
}
