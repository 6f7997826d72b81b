package backup

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
)

// referrersRegistry is go-containerregistry's in-process registry with the
// referrers API (stock distribution v3.1.2 has none).
func referrersRegistry(t *testing.T) string {
	t.Helper()
	s := httptest.NewServer(registry.New(registry.WithReferrersSupport(true), registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

// distributionRegistry is stock distribution v3, in-process.
func distributionRegistry(t *testing.T) string {
	t.Helper()
	return regtest.Registry(t, embedded.Options{}).Host
}

// chain is an image, an SBOM whose subject is the image, and a signature
// whose subject is the SBOM, all in one repository.
type chain struct {
	repo           string
	image, sbom    v1.Hash
	signature      v1.Hash
	sbomDescriptor v1.Descriptor // as a referrers list must show it
}

// artifact is an OCI manifest with one layer, the given config media type
// (its artifactType in a referrers list), annotations and subject.
func artifact(t *testing.T, configType types.MediaType, content string, ann map[string]string, subject v1.Descriptor) v1.Image {
	t.Helper()
	img := mutate.ConfigMediaType(mustAppend(t, static.NewLayer([]byte(content), "application/octet-stream")), configType)
	img = mutate.Annotations(img, ann).(v1.Image)
	return mutate.Subject(img, subject).(v1.Image)
}

// pushChain pushes the chain with go-containerregistry's remote.Write,
// which on a registry without the referrers API writes the referrers
// fallback tags (sha256-<hex>), as cosign, oras and regctl do.
func pushChain(t *testing.T, host string) chain {
	t.Helper()
	c := chain{repo: "app/chain"}
	repo, err := name.NewRepository(host+"/"+c.repo, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, _ := random.Image(256, 1)
	if err := remote.Write(repo.Tag("1"), img); err != nil {
		t.Fatal(err)
	}
	imgDesc, err := partial.Descriptor(img)
	if err != nil {
		t.Fatal(err)
	}
	c.image = imgDesc.Digest
	sbom := artifact(t, "application/vnd.example.sbom.v1+json", `{"packages":[]}`, map[string]string{"org.example.kind": "sbom"}, *imgDesc)
	sbomDesc, _ := partial.Descriptor(sbom)
	c.sbom = sbomDesc.Digest
	c.sbomDescriptor = v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: sbomDesc.Digest, Size: sbomDesc.Size,
		ArtifactType: "application/vnd.example.sbom.v1+json", Annotations: map[string]string{"org.example.kind": "sbom"}}
	if err := remote.Write(repo.Digest(c.sbom.String()), sbom); err != nil {
		t.Fatal(err)
	}
	sig := artifact(t, "application/vnd.example.signature.v1+json", "signature over the sbom", map[string]string{"org.example.kind": "signature"}, *sbomDesc)
	sigDesc, _ := partial.Descriptor(sig)
	c.signature = sigDesc.Digest
	if err := remote.Write(repo.Digest(c.signature.String()), sig); err != nil {
		t.Fatal(err)
	}
	return c
}

// referrersOf lists the referrers of subject with go-containerregistry's
// remote.Referrers (the API, else the fallback tag).
func referrersOf(t *testing.T, host, repo string, subject v1.Hash) []v1.Descriptor {
	t.Helper()
	d, err := name.NewDigest(host+"/"+repo+"@"+subject.String(), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Referrers(d)
	if err != nil {
		t.Fatalf("referrers of %s: %v", subject, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	return im.Manifests
}

func digestsOf(ds []v1.Descriptor) []v1.Hash {
	out := []v1.Hash{}
	for _, d := range ds {
		out = append(out, d.Digest)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// checkChain fails unless the whole chain is in the registry at host and
// each level is listed as a referrer of the one above, by
// remote.Referrers and, when it is installed, by regctl artifact list.
func checkChain(t *testing.T, host string, c chain) {
	t.Helper()
	desc, err := remote.Head(mustRef(t, host+"/"+c.repo+":1"))
	if err != nil || desc.Digest != c.image {
		t.Fatalf("%s:1: %v %v, want %s", c.repo, desc, err, c.image)
	}
	for _, d := range []v1.Hash{c.sbom, c.signature} {
		if _, err := remote.Head(mustRef(t, host+"/"+c.repo+"@"+d.String())); err != nil {
			t.Errorf("%s not restored: %v", d, err)
		}
	}
	if diff := cmp.Diff([]v1.Hash{c.sbom}, digestsOf(referrersOf(t, host, c.repo, c.image))); diff != "" {
		t.Errorf("referrers of the image (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]v1.Hash{c.signature}, digestsOf(referrersOf(t, host, c.repo, c.sbom))); diff != "" {
		t.Errorf("referrers of the SBOM (-want +got):\n%s", diff)
	}
	if regctl := findClient(t, "regctl", false); regctl != "" {
		for subject, want := range map[v1.Hash]v1.Hash{c.image: c.sbom, c.sbom: c.signature} {
			out := runClient(t, regctl, "--host", "reg="+host+",tls=disabled", "artifact", "list", host+"/"+c.repo+"@"+subject.String(),
				"--format", "{{range .Descriptors}}{{println .Digest}}{{end}}")
			if strings.TrimSpace(out) != want.String() {
				t.Errorf("regctl artifact list %s: %q, want %s", subject, out, want)
			}
		}
	} else {
		clientMissing(t, "regctl", "regctl artifact list")
	}
	if oras := findClient(t, "oras", false); oras != "" {
		// oras discover walks the whole tree of referrers.
		out := runClient(t, oras, "discover", "--plain-http", "--format", "json", host+"/"+c.repo+"@"+c.image.String())
		type node struct {
			Digest    v1.Hash `json:"digest"`
			Referrers []node  `json:"referrers"`
		}
		var got node
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("oras discover: %v\n%s", err, out)
		}
		want := node{Digest: c.image, Referrers: []node{{Digest: c.sbom, Referrers: []node{{Digest: c.signature, Referrers: []node{}}}}}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("oras discover (-want +got):\n%s", diff)
		}
	} else {
		clientMissing(t, "oras", "oras discover")
	}
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func restore(t *testing.T, dir, host string, opts RestoreOptions) *RestoreResult {
	t.Helper()
	opts.Client = regtest.Client()
	res, err := Restore(context.Background(), dir, host, opts)
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	if len(res.Errors) > 0 {
		t.Fatalf("restore errors: %+v", res.Errors)
	}
	return res
}

// A three-level chain (image <- SBOM <- signature on the SBOM) survives
// backup and restore between registries with and without the referrers
// API, in all four directions, and is found in each by stock clients.
func TestReferrerChainBackupRestore(t *testing.T) {
	sources := map[string]func(*testing.T) string{"api": referrersRegistry, "distribution": distributionRegistry}
	for _, from := range []string{"api", "distribution"} {
		t.Run("from-"+from, func(t *testing.T) {
			src := sources[from](t)
			c := pushChain(t, src)
			checkChain(t, src, c)
			dir := t.TempDir()
			res := backup(t, src, dir, testOptions())
			if from == "api" && (!res.ReferrersAPI || res.Referrers != 2) {
				t.Errorf("backup through the API found %d referrers, want 2: %+v", res.Referrers, res)
			}
			for _, d := range []v1.Hash{c.sbom, c.signature} {
				if !(Layout{Root: dir}).HasBlob(d, -1) {
					t.Errorf("%s not backed up", d)
				}
			}
			mustVerify(t, dir)
			for _, to := range []string{"api", "distribution"} {
				t.Run("to-"+to, func(t *testing.T) {
					dst := sources[to](t)
					rres := restore(t, dir, dst, RestoreOptions{})
					if to == "distribution" && from == "api" && rres.ReferrersTagsWritten != 2 {
						t.Errorf("referrers tags written: %d, want 2 (one per subject)", rres.ReferrersTagsWritten)
					}
					checkChain(t, dst, c)
					if to == "distribution" {
						// The fallback tag lists the SBOM as the spec says:
						// artifactType from the config, annotations copied.
						got := referrersOf(t, dst, c.repo, c.image)
						if diff := cmp.Diff([]v1.Descriptor{c.sbomDescriptor}, got); diff != "" {
							t.Errorf("referrers tag entry (-want +got):\n%s", diff)
						}
					}
					again := restore(t, dir, dst, RestoreOptions{})
					if again.ManifestsPushed != 0 || again.ReferrersTagsWritten != 0 {
						t.Errorf("second restore pushed %d manifests, %d referrers tags", again.ManifestsPushed, again.ReferrersTagsWritten)
					}
				})
			}
		})
	}
}

// The depth limit: 1 stops at the SBOM, on backup (through the API and
// through the fallback tags a tag filter brings) and on restore.
func TestReferrersDepthLimit(t *testing.T) {
	for _, from := range []string{"api", "distribution"} {
		t.Run(from, func(t *testing.T) {
			var src string
			if from == "api" {
				src = referrersRegistry(t)
			} else {
				src = distributionRegistry(t)
			}
			c := pushChain(t, src)
			l := Layout{Root: t.TempDir()}
			opts := testOptions()
			opts.Tag = regexp.MustCompile(`^1$`)
			opts.ReferrersDepth = 1
			backup(t, src, l.Root, opts)
			if !l.HasBlob(c.sbom, -1) || l.HasBlob(c.signature, -1) {
				t.Errorf("depth 1: SBOM backed up %v (want true), signature %v (want false)", l.HasBlob(c.sbom, -1), l.HasBlob(c.signature, -1))
			}
			opts.ReferrersDepth = 2
			backup(t, src, l.Root, opts)
			if !l.HasBlob(c.signature, -1) {
				t.Error("depth 2: signature not backed up")
			}

			dst := distributionRegistry(t)
			restore(t, l.Root, dst, RestoreOptions{Tag: regexp.MustCompile(`^1$`), ReferrersDepth: 1})
			if got := digestsOf(referrersOf(t, dst, c.repo, c.image)); !cmp.Equal(got, []v1.Hash{c.sbom}) {
				t.Errorf("depth 1 restore: referrers of the image %v", got)
			}
			if _, err := remote.Head(mustRef(t, dst+"/"+c.repo+"@"+c.signature.String())); err == nil {
				t.Error("depth 1 restore pushed the signature")
			}
			restore(t, l.Root, dst, RestoreOptions{Tag: regexp.MustCompile(`^1$`)})
			checkChain(t, dst, c)
		})
	}
}

// A registry's own referrers tag is merged with, not overwritten: a
// referrer pushed there before the restore stays listed.
func TestRestoreMergesReferrersTag(t *testing.T) {
	src := referrersRegistry(t)
	c := pushChain(t, src)
	dir := t.TempDir()
	backup(t, src, dir, testOptions())

	dst := distributionRegistry(t)
	repo, _ := name.NewRepository(dst+"/"+c.repo, name.Insecure)
	// Another referrer of the image, pushed to the target first (by
	// remote.Write, which writes the fallback tag).
	subject := v1.Descriptor{MediaType: types.DockerManifestSchema2, Digest: c.image, Size: 1}
	if raw, err := (Layout{Root: dir}).ReadBlob(c.image); err == nil {
		subject.Size = int64(len(raw))
		var m struct {
			MediaType types.MediaType `json:"mediaType"`
		}
		_ = json.Unmarshal(raw, &m)
		subject.MediaType = m.MediaType
	}
	other := artifact(t, "application/vnd.example.vex.v1+json", "vex", nil, subject)
	od, _ := other.Digest()
	if err := remote.Write(repo.Digest(od.String()), other); err != nil {
		t.Fatal(err)
	}
	restore(t, dir, dst, RestoreOptions{})
	want := []v1.Hash{c.sbom, od}
	sort.Slice(want, func(i, j int) bool { return want[i].String() < want[j].String() })
	if diff := cmp.Diff(want, digestsOf(referrersOf(t, dst, c.repo, c.image))); diff != "" {
		t.Errorf("referrers of the image after restore (-want +got):\n%s", diff)
	}
	if got := digestsOf(referrersOf(t, dst, c.repo, c.sbom)); !cmp.Equal(got, []v1.Hash{c.signature}) {
		t.Errorf("referrers of the SBOM: %v", got)
	}
}

// clientMissing says that a client the test checks with is not installed:
// a failure under CI (CI=true), where scripts/setup-clients installs it,
// and a note elsewhere.
func clientMissing(t *testing.T, tool, check string) {
	t.Helper()
	msg := fmt.Sprintf("%s is not installed (scripts/setup-clients): not checked with %s", tool, check)
	if os.Getenv("CI") == "true" {
		t.Error(msg)
		return
	}
	t.Log(msg)
}
