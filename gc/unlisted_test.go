package gc

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"
)

// planFacts is what a plan deletes and keeps, by repository@digest.
type planFacts struct {
	Manifests map[string][]string // -> history tags
	Links     map[string]bool
	Blobs     map[string]string // digest -> the repository its bytes count against
	Kept      map[string]string // -> reason
}

// factsOf spells out a plan, checking that each repository's manifests
// and layer links come in the order of their digests.
func factsOf(t *testing.T, p *Plan) planFacts {
	t.Helper()
	f := planFacts{Manifests: map[string][]string{}, Links: map[string]bool{}, Blobs: map[string]string{}, Kept: map[string]string{}}
	for i, m := range p.Manifests {
		f.Manifests[m.Repository+"@"+m.Digest.String()] = m.HistoryTags
		if i > 0 && p.Manifests[i-1].Repository == m.Repository && p.Manifests[i-1].Digest >= m.Digest {
			t.Errorf("manifests of %s out of order: %s before %s", m.Repository, p.Manifests[i-1].Digest, m.Digest)
		}
	}
	var prev BlobRef
	err := p.linkChunks(3, func(c []BlobRef) error {
		for _, l := range c {
			f.Links[l.Repository+"@"+l.Digest.String()] = true
			if prev.Repository == l.Repository && prev.Digest >= l.Digest {
				t.Errorf("layer links of %s out of order: %s before %s", l.Repository, prev.Digest, l.Digest)
			}
			prev = l
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = p.blobChunks(3, func(c []BlobDeletion) error {
		for _, b := range c {
			o, _ := p.owner(b.Digest)
			f.Blobs[b.Digest.String()] = o
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range p.Kept {
		f.Kept[k.Repository+"@"+k.Digest.String()] = k.Reason
	}
	return f
}

// Digests that are not in the blob listing (a layer whose blob is lost, a
// layer link to nothing, a revision whose manifest blob is lost, a
// manifest only in the quarantine) are named past the listing (ids.go):
// the plan is what it was when the mark named every digest by its sum. A
// dead manifest naming a lost layer is deleted with its links and the
// blobs that are there; a tagged one naming a lost layer keeps its links;
// a link to nothing is deleted; a revision whose blob is lost is kept and
// reported; a dead manifest read from the quarantine is deleted; and each
// repository's deletions stay in the order of their digests.
func TestPlanUnlistedDigests(t *testing.T) {
	srv, _, d := seeded(t)
	ctx := context.Background()
	const repo = "team-d/tool"
	write := func(p string, b []byte) {
		t.Helper()
		full := filepath.Join(srv.Root, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	blob := func(content string, stored bool) digest.Digest {
		dg := digest.FromString(content)
		if stored {
			write(pathFor(blobDataSpec{dg}), []byte(content))
		}
		return dg
	}
	manifest := func(config digest.Digest, layers ...digest.Digest) string {
		s := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + config.String() + `","size":1},"layers":[`
		for i, l := range layers {
			if i > 0 {
				s += ","
			}
			s += `{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"` + l.String() + `","size":1}`
		}
		return s + "]}"
	}
	link := func(p string, dg digest.Digest) { write(p, []byte(dg.String())) }

	opts := noGrace()
	opts.DryRun = true
	before, err := PlanGC(ctx, d, opts)
	if err != nil {
		t.Fatal(err)
	}
	want := factsOf(t, before)

	// A dead manifest naming a lost layer.
	deadConfig, deadLayer, lostLayer := blob("dead config", true), blob("dead layer", true), blob("lost dead layer", false)
	dead := blob(manifest(deadConfig, deadLayer, lostLayer), true)
	link(pathFor(revisionLinkSpec{repo, dead}), dead)
	for _, l := range []digest.Digest{deadConfig, deadLayer, lostLayer} {
		link(pathFor(layerLinkSpec{repo, l}), l)
	}
	// A tagged manifest naming a lost layer.
	liveConfig, liveLost := blob("live config", true), blob("lost live layer", false)
	live := blob(manifest(liveConfig, liveLost), true)
	link(pathFor(revisionLinkSpec{repo, live}), live)
	link(pathFor(tagCurrentSpec{repo, "unlisted"}), live)
	link(pathFor(tagIndexLinkSpec{repo, "unlisted", live}), live)
	for _, l := range []digest.Digest{liveConfig, liveLost} {
		link(pathFor(layerLinkSpec{repo, l}), l)
	}
	// A layer link to nothing, sorting before every digest.
	nothing := digest.NewDigestFromEncoded(digest.SHA256, "0000000000000000000000000000000000000000000000000000000000000001")
	link(pathFor(layerLinkSpec{repo, nothing}), nothing)
	// A revision whose manifest blob is lost.
	lostManifest := blob(manifest(deadConfig), false)
	link(pathFor(revisionLinkSpec{repo, lostManifest}), lostManifest)
	// A dead manifest only in the quarantine.
	qConfig := blob("quarantined manifest's config", true)
	qBody := manifest(qConfig)
	quarantined := digest.FromString(qBody)
	write(pathFor(quarantineDataSpec{quarantined}), []byte(qBody))
	link(pathFor(revisionLinkSpec{repo, quarantined}), quarantined)
	link(pathFor(layerLinkSpec{repo, qConfig}), qConfig)

	for _, m := range []digest.Digest{dead, quarantined} {
		want.Manifests[repo+"@"+m.String()] = nil
	}
	for _, l := range []digest.Digest{deadConfig, deadLayer, lostLayer, nothing, qConfig} {
		want.Links[repo+"@"+l.String()] = true
	}
	for _, b := range []digest.Digest{dead, deadConfig, deadLayer, qConfig} {
		want.Blobs[b.String()] = repo
	}
	want.Kept[repo+"@"+lostManifest.String()] = "blob missing"

	after, err := PlanGC(ctx, d, opts)
	if err != nil {
		t.Fatal(err)
	}
	got := factsOf(t, after)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("plan (-want +got):\n%s", diff)
	}
}
