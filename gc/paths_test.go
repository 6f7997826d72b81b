package gc

import (
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestPathFor(t *testing.T) {
	d := digest.Digest("sha256:abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789")
	const hex = "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
	const repo = "/docker/registry/v2/repositories/team-a/api"
	for _, tc := range []struct {
		spec pathSpec
		want string
	}{
		{registryRootSpec{}, "/docker/registry/v2"},
		{lockSpec{}, "/docker/registry/v2/regkeeper-gc.lock"},
		{markCacheSpec{}, "/docker/registry/v2/regkeeper-markcache"},
		{repositoriesSpec{}, "/docker/registry/v2/repositories"},
		{blobsSpec{digest.SHA256}, "/docker/registry/v2/blobs/sha256"},
		{blobSpec{d}, "/docker/registry/v2/blobs/sha256/ab/" + hex},
		{blobDataSpec{d}, "/docker/registry/v2/blobs/sha256/ab/" + hex + "/data"},
		{repositorySpec{"team-a/api"}, repo},
		{revisionsSpec{"team-a/api", digest.SHA256}, repo + "/_manifests/revisions/sha256"},
		{revisionSpec{"team-a/api", d}, repo + "/_manifests/revisions/sha256/" + hex},
		{revisionLinkSpec{"team-a/api", d}, repo + "/_manifests/revisions/sha256/" + hex + "/link"},
		{tagsSpec{"team-a/api"}, repo + "/_manifests/tags"},
		{tagSpec{"team-a/api", "1.0"}, repo + "/_manifests/tags/1.0"},
		{tagCurrentSpec{"team-a/api", "1.0"}, repo + "/_manifests/tags/1.0/current/link"},
		{tagIndexSpec{"team-a/api", "1.0", digest.SHA256}, repo + "/_manifests/tags/1.0/index/sha256"},
		{tagIndexEntrySpec{"team-a/api", "1.0", d}, repo + "/_manifests/tags/1.0/index/sha256/" + hex},
		{tagIndexLinkSpec{"team-a/api", "1.0", d}, repo + "/_manifests/tags/1.0/index/sha256/" + hex + "/link"},
		{layersSpec{"team-a/api", digest.SHA256}, repo + "/_layers/sha256"},
		{layerSpec{"team-a/api", d}, repo + "/_layers/sha256/" + hex},
		{layerLinkSpec{"team-a/api", d}, repo + "/_layers/sha256/" + hex + "/link"},
		{uploadsSpec{"team-a/api"}, repo + "/_uploads"},
		{uploadSpec{"team-a/api", "u1"}, repo + "/_uploads/u1"},
		{startedAtSpec{"team-a/api", "u1"}, repo + "/_uploads/u1/startedat"},
		{quarantineSpec{}, "/docker/registry/v2/regkeeper-quarantine"},
		{quarantineSinceSpec{}, "/docker/registry/v2/regkeeper-quarantine/since"},
		{quarantineBlobsSpec{digest.SHA256}, "/docker/registry/v2/regkeeper-quarantine/sha256"},
		{quarantinePrefixSpec{d}, "/docker/registry/v2/regkeeper-quarantine/sha256/" + hex[:2]},
		{quarantineDataSpec{d}, "/docker/registry/v2/regkeeper-quarantine/sha256/" + hex[:2] + "/" + hex},
	} {
		if got := pathFor(tc.spec); got != tc.want {
			t.Errorf("pathFor(%#v) = %s, want %s", tc.spec, got, tc.want)
		}
	}
	for p, want := range map[string]string{
		repo + "/_manifests":                  "team-a/api",
		repo + "/_layers":                     "team-a/api",
		repo + "/_uploads":                    "team-a/api",
		repo:                                  "",
		"/docker/registry/v2/blobs/sha256/ab": "",
		repo + "/_manifests/revisions/sha256/abc": "",
	} {
		if got := repoFromPath(p); got != want {
			t.Errorf("repoFromPath(%s) = %q, want %q", p, got, want)
		}
	}
}

func TestParseRepoPath(t *testing.T) {
	d := digest.Digest("sha256:abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789")
	const repo = "team-a/api"
	for _, tc := range []struct {
		path  string
		isDir bool
		want  repoEntry
	}{
		{pathFor(revisionLinkSpec{repo, d}), false, repoEntry{kind: entryRevision, digest: d}},
		{pathFor(tagSpec{repo, "1.0"}), true, repoEntry{kind: entryTag, tag: "1.0"}},
		{pathFor(tagCurrentSpec{repo, "1.0"}), false, repoEntry{kind: entryTagCurrent, tag: "1.0"}},
		{pathFor(tagIndexLinkSpec{repo, "1.0", d}), false, repoEntry{kind: entryTagIndex, tag: "1.0", digest: d}},
		{pathFor(layerLinkSpec{repo, d}), false, repoEntry{kind: entryLayer, digest: d}},
		{pathFor(uploadsSpec{repo}), true, repoEntry{kind: entryUploadsRoot}},
		{pathFor(uploadSpec{repo, "u1"}), true, repoEntry{kind: entryUpload, id: "u1"}},
		{pathFor(repositorySpec{repo + "/nested"}), true, repoEntry{kind: entryNested}},
		{pathFor(startedAtSpec{repo, "u1"}), false, repoEntry{}},
		{pathFor(revisionLinkSpec{repo, d})[:len(pathFor(revisionLinkSpec{repo, d}))-len("/link")] + "/data", false, repoEntry{}},
		{pathFor(repositorySpec{repo}) + "/_layers/sha256/nothex/link", false, repoEntry{}},
		{pathFor(repositorySpec{"other"}) + "/_layers", true, repoEntry{}},
	} {
		if got := parseRepoPath(repo, tc.path, tc.isDir); got != tc.want {
			t.Errorf("parseRepoPath(%s, %v) = %+v, want %+v", tc.path, tc.isDir, got, tc.want)
		}
	}
}
