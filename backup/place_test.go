package backup

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func TestParseRefName(t *testing.T) {
	for _, tc := range []struct {
		in, repo, tag, err string
	}{
		{in: "team-a/api:1.0", repo: "team-a/api", tag: "1.0"},
		{in: "127.0.0.1:5000/team-a/api:1.0", repo: "team-a/api", tag: "1.0"},
		{in: "registry.example.com/api:latest", repo: "api", tag: "latest"},
		{in: "localhost/x/y:2", repo: "x/y", tag: "2"},
		{in: "api:1", repo: "api", tag: "1"},
		{in: "1.0", tag: "1.0"},
		{in: "sha256-" + hex64, tag: "sha256-" + hex64},
		{in: "team-a/api", err: "has no tag"},
		{in: "team-a/api@sha256:" + hex64, err: "names a digest"},
		{in: "Team-A/api:1", err: "not a repository and tag"},
		{in: "api:bad tag", err: "not a repository and tag"},
	} {
		repo, tag, err := parseRefName(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want one mentioning %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || repo != tc.repo || tag != tc.tag {
			t.Errorf("%q: %q %q %v, want %q %q", tc.in, repo, tag, err, tc.repo, tc.tag)
		}
	}
}

func TestMapRepository(t *testing.T) {
	maps := []Mapping{{Old: "team-a", New: "archive/team-a"}, {Old: "team-a/api", New: "api"}, {Old: "base", New: "mirror/base"}}
	for in, want := range map[string]string{
		"team-a/api":     "api",                   // the longest prefix wins
		"team-a/api/sub": "api/sub",               // whole components
		"team-a/web":     "archive/team-a/web",    //
		"team-a":         "archive/team-a",        //
		"team-ab/x":      "team-ab/x",             // not a component prefix
		"base/debian":    "mirror/base/debian",    //
		"other":          "other",                 //
		"team-a/api2":    "archive/team-a/api2",   //
		"team-a/apix/y":  "archive/team-a/apix/y", //
	} {
		if got := mapRepository(maps, in); got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
	for _, bad := range []string{"a", "a=", "=b", "A=b", "a=b c"} {
		if _, err := ParseMapping(bad); err == nil {
			t.Errorf("ParseMapping(%q) accepted", bad)
		}
	}
	if m, err := ParseMapping("team-a/=archive/team-a"); err != nil || m != (Mapping{Old: "team-a", New: "archive/team-a"}) {
		t.Errorf("ParseMapping: %+v %v", m, err)
	}
}

const hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// The referrers list is merged as the distribution spec says: appended,
// never duplicated, everything else of the registry's list kept.
func TestMergeReferrersList(t *testing.T) {
	d := func(c string) v1.Descriptor {
		return v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: v1.Hash{Algorithm: "sha256", Hex: c + hex64[1:]}, Size: 10, ArtifactType: "application/x"}
	}
	list := func(t *testing.T, b []byte) (v1.IndexManifest, map[string]json.RawMessage) {
		var im v1.IndexManifest
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(b, &im); err != nil {
			t.Fatal(err)
		}
		_ = json.Unmarshal(b, &raw)
		return im, raw
	}

	b, changed, err := mergeReferrersList(nil, []v1.Descriptor{d("a"), d("b"), d("a")})
	if err != nil || !changed {
		t.Fatalf("from nothing: %v %v", changed, err)
	}
	im, _ := list(t, b)
	if im.SchemaVersion != 2 || im.MediaType != types.OCIImageIndex {
		t.Errorf("new list: %s", b)
	}
	if diff := cmp.Diff([]v1.Descriptor{d("a"), d("b")}, im.Manifests); diff != "" {
		t.Errorf("new list (-want +got):\n%s", diff)
	}

	existing := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","annotations":{"k":"v"},"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:b` + hex64[1:] + `","size":10,"x-extra":1}]}`)
	b, changed, err = mergeReferrersList(existing, []v1.Descriptor{d("b"), d("c")})
	if err != nil || !changed {
		t.Fatalf("merge: %v %v", changed, err)
	}
	im, raw := list(t, b)
	if len(im.Manifests) != 2 || im.Manifests[0].Digest != d("b").Digest || im.Manifests[1].Digest != d("c").Digest || string(raw["annotations"]) != `{"k":"v"}` {
		t.Errorf("merged: %s", b)
	}
	if !strings.Contains(string(b), `"x-extra":1`) {
		t.Errorf("an existing entry was rewritten: %s", b)
	}

	if b, changed, err := mergeReferrersList(existing, []v1.Descriptor{d("b")}); err != nil || changed || string(b) != string(existing) {
		t.Errorf("nothing to add: changed %v, %v, %s", changed, err, b)
	}
	if _, _, err := mergeReferrersList([]byte("not json"), nil); err == nil {
		t.Error("a broken list was accepted")
	}
}
