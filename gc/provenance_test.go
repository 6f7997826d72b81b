package gc

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/regkeeper/regkeeper/internal/testbed/estate"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
)

func TestBaseRepositories(t *testing.T) {
	for _, tc := range []struct {
		name string
		want []string
	}{
		{"base/debian:12", []string{"base/debian"}},
		{"registry.example.com/base/debian:12", []string{"base/debian", "registry.example.com/base/debian"}},
		{"127.0.0.1:5000/base/debian@sha256:abc", []string{"base/debian", "127.0.0.1:5000/base/debian"}},
		{"localhost/debian", []string{"debian", "localhost/debian"}},
		{"localhost:5000/team/base:1", []string{"team/base", "localhost:5000/team/base"}},
		{"docker.io/library/debian:12@sha256:abc", []string{"library/debian", "docker.io/library/debian"}},
		{"docker.io/debian:12", []string{"debian", "docker.io/debian", "library/debian"}},
		{"debian:12", []string{"debian", "library/debian"}},
		{"", nil},
	} {
		if diff := cmp.Diff(tc.want, baseRepositories(tc.name)); diff != "" {
			t.Errorf("%q (-want +got):\n%s", tc.name, diff)
		}
	}
}

// team-b/web:prod is built on an untagged debian that only its
// base.digest annotation names: gc keeps it (and its config) by default,
// and deletes it with NoKeepBases.
func TestGCKeepsBases(t *testing.T) {
	for _, keep := range []bool{true, false} {
		t.Run(map[bool]string{true: "default", false: "no-keep-bases"}[keep], func(t *testing.T) {
			srv, e, d := seeded(t)
			var base estate.Manifest
			for _, b := range e.Builds {
				if b.Repository == "team-b/web" && b.Annotated {
					base, _ = e.Find(b.BaseRepository, b.BaseDigest)
				}
			}
			if base.Repository != "base/debian" || base.Live || len(base.Tags) != 0 {
				t.Fatalf("estate: team-b/web's base is %+v, want an untagged base/debian", base)
			}
			opts := noGrace()
			opts.NoKeepBases = !keep
			rep, err := Run(context.Background(), d, opts)
			if err != nil {
				t.Fatal(err)
			}
			if keep && (rep.ManifestsKeptAsBase < 1 || !containsRef(rep.KeptAsBase, BlobRef{base.Repository, dg(base.Digest)})) {
				t.Errorf("manifestsKeptAsBase = %d, kept %v; want the base %s", rep.ManifestsKeptAsBase, rep.KeptAsBase, base.Digest)
			}
			if !keep && rep.ManifestsKeptAsBase != 0 {
				t.Errorf("manifestsKeptAsBase = %d with NoKeepBases", rep.ManifestsKeptAsBase)
			}
			err = regtest.Pull(context.Background(), regtest.Ref(t, srv, "base/debian@"+base.Digest.String()))
			if keep && err != nil {
				t.Errorf("pulling the kept base: %v", err)
			}
			if !keep && err == nil {
				t.Error("the base still pulls with NoKeepBases")
			}
			if got := exists(t, srv, pathFor(blobSpec{dg(base.Blobs[0])})); got != keep {
				t.Errorf("base config blob exists=%v, want %v", got, keep)
			}
			regtest.PullAll(t, srv.Host, e)
		})
	}
}

func containsRef(refs []BlobRef, r BlobRef) bool {
	for _, x := range refs {
		if x == r {
			return true
		}
	}
	return false
}
