package retain

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/regkeeper/regkeeper/gc"
	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
	"github.com/regkeeper/regkeeper/internal/testbed/stock"
	"github.com/regkeeper/regkeeper/internal/walk"
)

// memEvidence is an in-memory usage ledger.
type memEvidence struct {
	events, running time.Time
	pulls           map[string]time.Time // repo:tag -> last pull; absent: unknown
	inUse           map[string][]string  // repo:tag -> where
}

func (m *memEvidence) LastPull(repo, tag string, _ time.Time) (time.Time, bool, error) {
	t, ok := m.pulls[repo+":"+tag]
	return t, ok, nil
}

func (m *memEvidence) InUse(repo, tag, _ string) (bool, []string, error) {
	w := m.inUse[repo+":"+tag]
	return len(w) > 0, w, nil
}

func (m *memEvidence) Freshness() (time.Time, time.Time, error) { return m.events, m.running, nil }

// testEstate is an estate built in the test on the embedded registry.
type testEstate struct {
	srv     *embedded.Server
	digests map[string]v1.Hash // repo:tag -> digest
	images  map[string]v1.Image
}

func (e *testEstate) push(t *testing.T, repo, tag string, img v1.Image) v1.Hash {
	t.Helper()
	if err := remote.Write(regtest.Ref(t, e.srv, repo+":"+tag), img); err != nil {
		t.Fatalf("pushing %s:%s: %v", repo, tag, err)
	}
	d, _ := img.Digest()
	e.digests[repo+":"+tag] = d
	e.images[d.String()] = img
	return d
}

func (e *testEstate) pushIndex(t *testing.T, repo, tag string, idx v1.ImageIndex) v1.Hash {
	t.Helper()
	if err := remote.WriteIndex(regtest.Ref(t, e.srv, repo+":"+tag), idx); err != nil {
		t.Fatalf("pushing %s:%s: %v", repo, tag, err)
	}
	d, _ := idx.Digest()
	e.digests[repo+":"+tag] = d
	return d
}

// pushed sets the push time of a tag: its current link's modification time.
func (e *testEstate) pushed(t *testing.T, repo, tag string, at time.Time) {
	t.Helper()
	p := filepath.Join(e.srv.Root, "docker/registry/v2/repositories", repo, "_manifests/tags", tag, "current/link")
	if err := os.Chtimes(p, at, at); err != nil {
		t.Fatal(err)
	}
}

func img(t *testing.T, base v1.Image, layers int64) v1.Image {
	t.Helper()
	r, err := random.Image(512, layers)
	if err != nil {
		t.Fatal(err)
	}
	if base == nil {
		return r
	}
	ls, _ := r.Layers()
	out, err := mutate.AppendLayers(base, ls...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// buildEstate: app has builds main-1..3 (main-1 and latest share a digest;
// main-2 and main-3 share a base layer), an index (idx-old) with two
// children and a cosign signature of it, a signature of latest; lib has
// semantic versions; other/untouched is covered by no policy.
func buildEstate(t *testing.T, srv ...*embedded.Server) *testEstate {
	if len(srv) == 0 {
		srv = append(srv, regtest.Registry(t, embedded.Options{}))
	}
	e := &testEstate{srv: srv[0], digests: map[string]v1.Hash{}, images: map[string]v1.Image{}}
	a := img(t, nil, 1)
	e.push(t, "app", "latest", a)
	e.push(t, "app", "main-1", a)
	base := img(t, nil, 1)
	e.push(t, "app", "main-2", img(t, base, 1))
	e.push(t, "app", "main-3", img(t, base, 1))
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: img(t, nil, 1), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: img(t, nil, 1), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}})
	id := e.pushIndex(t, "app", "idx-old", idx)
	e.push(t, "app", "sha256-"+id.Hex+".sig", img(t, nil, 1))
	e.push(t, "app", "sha256-"+e.digests["app:latest"].Hex+".sig", img(t, nil, 1))
	for _, v := range []string{"1.0.0", "1.1.0", "2.0.0", "2.1.0-rc.1", "2.0.0-rc.1"} {
		e.push(t, "lib", v, img(t, nil, 1))
	}
	e.push(t, "other/untouched", "x", a) // shares latest's digest and blobs
	e.setTimes(t)
	return e
}

// setTimes dates the estate's pushes (undo tags again, which is a push).
func (e *testEstate) setTimes(t *testing.T) {
	id := e.digests["app:idx-old"]
	day := func(n int) time.Time { return now.Add(-time.Duration(n) * 24 * time.Hour) }
	for tag, n := range map[string]int{"latest": 1, "main-1": 40, "main-2": 30, "main-3": 20, "idx-old": 100,
		"sha256-" + id.Hex + ".sig": 100, "sha256-" + e.digests["app:latest"].Hex + ".sig": 1} {
		e.pushed(t, "app", tag, day(n))
	}
	for _, v := range []string{"1.0.0", "1.1.0", "2.0.0", "2.1.0-rc.1", "2.0.0-rc.1"} {
		e.pushed(t, "lib", v, day(100))
	}
}

const estatePolicy = `
policies:
  - repositories: ["app", "lib"]
    keep:
      - tags: ['^latest$']
      - mostRecentlyPushed: 1
        tags: ['^main-']
      - pushedWithin: 10d
      - semver: {majors: 1}
`

func plan(t *testing.T, e *testEstate, policy *Policy, storage bool, ev Evidence) (*Plan, *walk.Walker) {
	t.Helper()
	ctx := context.Background()
	w, err := walk.New(ctx, e.srv.Host, walk.Options{Client: regtest.Client()})
	if err != nil {
		t.Fatal(err)
	}
	opts := GatherOptions{Policy: policy, Now: now, Jobs: 4, Evidence: ev}
	if storage {
		if opts.Storage, err = gc.OpenRoot(ctx, e.srv.Root); err != nil {
			t.Fatal(err)
		}
	}
	facts, errs, err := Gather(ctx, w, opts)
	if err != nil || len(errs) > 0 {
		t.Fatalf("gathering: %v %v", err, errs)
	}
	return Apply(facts, policy, now), w
}

func tagsOf(t *testing.T, e *testEstate, repo string) []string {
	t.Helper()
	tags, err := remote.List(regtest.Ref(t, e.srv, repo+":x").Context())
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(tags)
	return tags
}

func TestRetainOnRegistry(t *testing.T) { retainOnRegistry(t, buildEstate(t)) }

// The same on the stock distribution registry binary (registry serve),
// installed by scripts/setup-registry.
func TestRetainOnStockRegistry(t *testing.T) {
	reg := stock.Start(t, stock.Options{})
	srv := &embedded.Server{Host: reg.Host, URL: "http://" + reg.Host,
		Root: filepath.Join(reg.Dir, "storage"), ConfigFile: filepath.Join(reg.Dir, "config.yml")}
	retainOnRegistry(t, buildEstate(t, srv))
}

func retainOnRegistry(t *testing.T, e *testEstate) {
	ctx := context.Background()
	policy := mustParse(t, estatePolicy)
	p, _ := plan(t, e, policy, true, nil)
	idx := e.digests["app:idx-old"]
	want := []string{"app:idx-old", "app:main-1", "app:main-2", "app:sha256-" + idx.Hex + ".sig", "lib:1.0.0", "lib:1.1.0", "lib:2.0.0-rc.1"}
	if diff := cmp.Diff(want, removedSet(p)); diff != "" {
		t.Fatalf("removed (-want +got):\n%s", diff)
	}
	for _, tp := range p.Tags {
		if tp.Repository == "app" && tp.PushedFrom != FromStorage {
			t.Errorf("%s: pushedFrom %q, want storage", tp.Tag, tp.PushedFrom)
		}
	}
	// Bytes: what only removed tags hold. main-1 shares latest's digest
	// (nothing); main-2 shares its base layer with main-3.
	var want64 int64
	size := func(i v1.Image) (n int64) {
		m, _ := i.RawManifest()
		n += int64(len(m))
		c, _ := i.RawConfigFile()
		return n + int64(len(c))
	}
	main2 := e.images[e.digests["app:main-2"].String()]
	want64 += size(main2)
	ls, _ := main2.Layers()
	s, _ := ls[1].Size()
	want64 += s
	if p.BytesFreed <= want64 {
		t.Errorf("bytesFreed %d, want more than main-2's own %d (plus the index, its signature and lib's)", p.BytesFreed, want64)
	}

	journal := filepath.Join(t.TempDir(), "journal")
	if err := WriteJournal(journal, e.srv.Host, p, now); err != nil {
		t.Fatal(err)
	}
	n, errs, err := Untag(ctx, e.srv.Host, p, RemoveOptions{Client: regtest.Client()})
	if err != nil || len(errs) > 0 || n != p.Removed {
		t.Fatalf("untag: %d of %d, %v %v", n, p.Removed, err, errs)
	}
	wantApp := []string{"latest", "main-3", "sha256-" + e.digests["app:latest"].Hex + ".sig"}
	if diff := cmp.Diff(wantApp, tagsOf(t, e, "app")); diff != "" {
		t.Errorf("app tags (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"2.0.0", "2.1.0-rc.1"}, tagsOf(t, e, "lib")); diff != "" {
		t.Errorf("lib tags (-want +got):\n%s", diff)
	}
	// main-1's digest is latest's: it still pulls by digest, fully.
	if err := regtest.Pull(ctx, regtest.Ref(t, e.srv, "app@"+e.digests["app:main-1"].String())); err != nil {
		t.Errorf("pulling main-1's digest after retain: %v", err)
	}
	// The index's children were not removed on their own: it still pulls
	// by digest until gc.
	if err := regtest.Pull(ctx, regtest.Ref(t, e.srv, "app@"+idx.String())); err != nil {
		t.Errorf("pulling the removed index by digest before gc: %v", err)
	}

	// Undo brings every tag back.
	_, entries, err := ReadJournal(journal)
	if err != nil || len(entries) != p.Removed {
		t.Fatalf("journal: %d entries, %v", len(entries), err)
	}
	res, err := Undo(ctx, e.srv.Host, entries, RemoveOptions{Client: regtest.Client()})
	if err != nil || len(res.NotRestored) != 0 || len(res.Restored) != len(entries) {
		t.Fatalf("undo: %+v %v", res, err)
	}
	for ref, d := range e.digests {
		desc, err := remote.Head(regtest.Ref(t, e.srv, ref))
		if err != nil || desc.Digest != d {
			t.Errorf("after undo %s: %v %v, want %s", ref, desc, err, d)
		}
	}

	// Again (undo was a push: dated again), then gc with no grace frees exactly the plan's bytes.
	e.setTimes(t)
	p2, _ := plan(t, e, policy, true, nil)
	if p2.BytesFreed != p.BytesFreed || p2.Removed != p.Removed {
		t.Fatalf("second plan: %d bytes %d removed, first %d %d", p2.BytesFreed, p2.Removed, p.BytesFreed, p.Removed)
	}
	if _, errs, err := Untag(ctx, e.srv.Host, p2, RemoveOptions{Client: regtest.Client()}); err != nil || len(errs) > 0 {
		t.Fatal(err, errs)
	}
	d, err := gc.Open(ctx, e.srv.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	gopts := gc.DefaultOptions()
	gopts.Grace, gopts.Jobs, gopts.Settle = 0, 4, 50*time.Millisecond
	rep, err := gc.Run(ctx, d, gopts)
	if err != nil {
		t.Fatal(err)
	}
	if rep.BytesReclaimed != p.BytesFreed {
		t.Errorf("gc reclaimed %d bytes, the plan said %d", rep.BytesReclaimed, p.BytesFreed)
	}
	// Undo after gc says what it could not bring back.
	res, err = Undo(ctx, e.srv.Host, entries, RemoveOptions{Client: regtest.Client()})
	if err != nil {
		t.Fatal(err)
	}
	var lost []string
	for _, f := range res.NotRestored {
		lost = append(lost, f.Repository+":"+f.Tag)
	}
	sort.Strings(lost)
	// main-1 comes back: its manifest is latest's.
	wantLost := []string{"app:idx-old", "app:main-2", "app:sha256-" + idx.Hex + ".sig", "lib:1.0.0", "lib:1.1.0", "lib:2.0.0-rc.1"}
	if diff := cmp.Diff(wantLost, lost); diff != "" {
		t.Errorf("not restored after gc (-want +got):\n%s", diff)
	}
}

func TestRetainPushTimeFromConfig(t *testing.T) {
	e := &testEstate{srv: regtest.Registry(t, embedded.Options{}), digests: map[string]v1.Hash{}, images: map[string]v1.Image{}}
	dated := func(created time.Time, history ...time.Time) v1.Image {
		i := img(t, nil, 1)
		cf, _ := i.ConfigFile()
		cf = cf.DeepCopy()
		cf.Created = v1.Time{Time: created}
		for _, h := range history {
			cf.History = append(cf.History, v1.History{Created: v1.Time{Time: h}})
		}
		out, err := mutate.ConfigFile(i, cf)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	epoch := time.Unix(0, 0).UTC()
	e.push(t, "app", "created", dated(now.Add(-48*time.Hour)))
	e.push(t, "app", "repro", dated(epoch, epoch, now.Add(-72*time.Hour)))
	e.push(t, "app", "undated", dated(epoch, time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)))
	e.push(t, "app", "old", dated(now.Add(-900*24*time.Hour)))
	policy := mustParse(t, "policies:\n  - repositories: [app]\n    keep:\n      - pushedWithin: 30d\n")
	p, _ := plan(t, e, policy, false, nil)
	got := map[string]string{}
	for _, tp := range p.Tags {
		got[tp.Tag] = fmt.Sprintf("%s %s %s", tp.Action, tp.PushedFrom, tp.Pushed)
	}
	want := map[string]string{
		"created": "keep created 2026-10-30T00:00:00Z",
		"repro":   "keep history 2026-10-29T00:00:00Z",
		"undated": "keep  ",
		"old":     "remove created 2024-05-15T00:00:00Z",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestRetainUsage(t *testing.T) {
	e := buildEstate(t)
	policy := mustParse(t, `
policies:
  - repositories: ["app"]
    keep:
      - pulledWithin: 30d
      - inUse: true
`)
	pulls := map[string]time.Time{"app:main-2": now.Add(-24 * time.Hour), "app:main-1": now.Add(-60 * 24 * time.Hour),
		"app:latest": now.Add(-90 * 24 * time.Hour), "app:idx-old": now.Add(-90 * 24 * time.Hour)}
	ev := &memEvidence{events: now, running: now, pulls: pulls, inUse: map[string][]string{"app:latest": {"prod/web"}}}
	p, _ := plan(t, e, policy, true, ev)
	// main-3 has no pull record: unknown keeps. latest is in use. The
	// index's signature follows the index.
	idx := e.digests["app:idx-old"]
	want := []string{"app:idx-old", "app:main-1", "app:sha256-" + idx.Hex + ".sig"}
	if diff := cmp.Diff(want, removedSet(p)); diff != "" {
		t.Errorf("removed (-want +got):\n%s", diff)
	}
	if len(p.Blocked) != 0 {
		t.Errorf("blocked with fresh evidence: %q", p.Blocked)
	}
	// Stale evidence blocks; so does none.
	ev.events = now.Add(-48 * time.Hour)
	if p, _ := plan(t, e, policy, true, ev); len(p.Blocked) != 1 {
		t.Errorf("stale events: blocked %q, want one reason", p.Blocked)
	}
	if p, _ := plan(t, e, policy, true, nil); len(p.Blocked) != 1 {
		t.Errorf("no ledger: blocked %q, want one reason", p.Blocked)
	}
	policy.AllowStaleUsage = true
	if p, _ := plan(t, e, policy, true, nil); len(p.Blocked) != 0 || p.Removed != 0 {
		t.Errorf("no ledger, allowed: blocked %q, %d removed, want none (unknown keeps)", p.Blocked, p.Removed)
	}
}

var _ = name.Insecure
