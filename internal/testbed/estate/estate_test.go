package estate_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/estate"
	"github.com/regkeeper/regkeeper/internal/testbed/pull"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
)

func TestSeedAndPullBack(t *testing.T) {
	srv, e := regtest.Seeded(t, embedded.Options{})
	regtest.PullAll(t, srv.Host, e)

	// Every manifest the estate says it pushed is there, by digest, dead or
	// alive (nothing has collected it yet).
	for _, m := range e.Manifests {
		ref := regtest.Ref(t, srv, m.Repository+"@"+m.Digest.String())
		if _, err := remote.Head(ref); err != nil {
			t.Errorf("%s (%s, live=%v): %v", ref, m.Role, m.Live, err)
		}
	}
	// Catalog lists every repository.
	reg, _ := name.NewRegistry(srv.Host, name.Insecure)
	repos, err := remote.Catalog(context.Background(), reg)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(repos), len(e.Repositories()); got != want {
		t.Errorf("catalog has %d repositories %v, want %d", got, repos, want)
	}
}

func TestEstateShape(t *testing.T) {
	_, e := regtest.Seeded(t, embedded.Options{})
	tags := e.Tags()
	for _, ref := range []string{"base/debian:12", "base/centos:7", "base/alpine:3.20", "team-a/api:1.0", "team-a/api:latest",
		"team-b/web:prod", "team-c/worker:2.3", "team-d/tool:1.0", "team-d/repro:1.0", "team-e/edge:1.0", "mirror/alpine:3.20"} {
		if _, ok := tags[ref]; !ok {
			t.Errorf("tag %s missing", ref)
		}
	}
	if tags["base/alpine:3.20"] != tags["mirror/alpine:3.20"] {
		t.Error("mirror/alpine:3.20 is not the same index as base/alpine:3.20")
	}
	if tags["team-a/api:1.0"] != tags["team-a/api:latest"] {
		t.Error("team-a/api 1.0 and latest differ")
	}
	// Tag replacement left dead manifests behind, and dead blobs.
	dead := e.ManifestsByLiveness(false)
	for repo, want := range map[string]int{"base/debian": 2, "base/alpine": 3, "team-a/api": 4, "team-b/web": 1} {
		if got := len(dead[repo]); got != want {
			t.Errorf("%s: %d dead manifests, want %d: %v", repo, got, want, dead[repo])
		}
	}
	if len(e.DeadBlobs()) == 0 {
		t.Error("no dead blobs")
	}
	// A tagless SBOM on the current build is live; the ones on old builds
	// are dead; the signature tags of old builds stay (tagged).
	var liveSBOM, deadSBOM, sigs int
	for _, m := range e.Manifests {
		switch {
		case m.Role == estate.RoleReferrer && len(m.Tags) == 0 && m.Live:
			liveSBOM++
		case m.Role == estate.RoleReferrer && !m.Live:
			deadSBOM++
		case m.Role == estate.RoleSignature && m.Live:
			sigs++
		}
	}
	if liveSBOM != 2 || deadSBOM != 2 || sigs != 3 {
		t.Errorf("referrers: %d live, %d dead; signatures %d; want 2, 2, 3", liveSBOM, deadSBOM, sigs)
	}
	// Seeding is deterministic: a second registry gets the same digests.
	_, e2 := regtest.Seeded(t, embedded.Options{})
	for ref, d := range e2.Tags() {
		if tags[ref] != d {
			t.Errorf("%s: %s then %s: seeding is not deterministic", ref, tags[ref], d)
		}
	}
	// Builds: one per live app tag and platform.
	if len(e.Builds) != 8 {
		t.Errorf("%d builds, want 8: %+v", len(e.Builds), e.Builds)
	}
}

// A pull fails on an index child absent from its repository, unless the
// estate left it out by design: a live child of team-e/edge's index
// deleted by hand does not pull; mirror/alpine's children (an index-only
// copy) are absent by design.
func TestPullAbsentChild(t *testing.T) {
	srv, e := regtest.Seeded(t, embedded.Options{})
	ctx := context.Background()
	edge := e.Tags()["team-e/edge:1.0"]
	m, ok := e.Find("team-e/edge", edge)
	if !ok || len(m.Children) == 0 {
		t.Fatalf("team-e/edge:1.0 is not an index in the estate: %+v", m)
	}
	mirror := e.Tags()["mirror/alpine:3.20"]
	if absent := e.AbsentChildren("mirror/alpine", mirror); len(absent) == 0 {
		t.Errorf("the estate marks no child of mirror/alpine:3.20 absent")
	}
	if absent := e.AbsentChildren("team-e/edge", edge); len(absent) != 0 {
		t.Errorf("the estate marks children of team-e/edge absent: %v", absent)
	}
	child := m.Children[0]
	link := filepath.Join(srv.Root, "docker/registry/v2/repositories/team-e/edge/_manifests/revisions", child.Algorithm, child.Hex, "link")
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if err := pull.Pull(ctx, regtest.Ref(t, srv, "team-e/edge:1.0")); err == nil {
		t.Error("team-e/edge:1.0 pulls with a child deleted")
	}
	if err := pull.Pull(ctx, regtest.Ref(t, srv, "mirror/alpine:3.20")); err == nil {
		t.Error("mirror/alpine:3.20 pulls without its children and without Absent")
	}
	if err := pull.Pull(ctx, regtest.Ref(t, srv, "mirror/alpine:3.20"), pull.Absent(e.AbsentChildren("mirror/alpine", mirror)...)); err != nil {
		t.Errorf("mirror/alpine:3.20 with its absent children named: %v", err)
	}
}
