package gc

import (
	"fmt"
	"path"
	"strings"

	"github.com/opencontainers/go-digest"
)

// This file is the one place that knows where distribution v3 keeps things.
// The layout, as written by registry/storage/paths.go of distribution:
//
//	/docker/registry/v2
//	├── regkeeper-gc.lock                      (ours: the gc lock)
//	├── regkeeper-markcache                    (ours: what the mark learned of each manifest read)
//	├── regkeeper-quarantine                   (ours: blobs an online run has set aside)
//	│   ├── since                              written when the run starts: its mtime, on the
//	│   │                                      storage's clock, is where the re-scan reads from
//	│   └── <algorithm>
//	│       └── <first two hex chars>
//	│           └── <hex>                      blob content: blobs/…/<hex>/data renamed here
//	├── blobs
//	│   └── <algorithm>
//	│       └── <first two hex chars>
//	│           └── <hex>
//	│               └── data                   blob content
//	└── repositories
//	    └── <name>                             may contain slashes: team-a/api
//	        ├── _layers
//	        │   └── <algorithm>
//	        │       └── <hex>
//	        │           └── link               configs and layers linked into the repo
//	        ├── _manifests
//	        │   ├── revisions
//	        │   │   └── <algorithm>
//	        │   │       └── <hex>
//	        │   │           └── link           every manifest ever put in the repo
//	        │   └── tags
//	        │       └── <tag>
//	        │           ├── current
//	        │           │   └── link           what the tag points at now
//	        │           └── index
//	        │               └── <algorithm>
//	        │                   └── <hex>
//	        │                       └── link   every digest the tag has pointed at
//	        └── _uploads
//	            └── <id>
//	                ├── data
//	                ├── hashstates/...
//	                └── startedat              RFC 3339 time the upload began
//
// A link file holds the digest it names. Deleting a revision directory
// untags nothing and frees nothing by itself: tags, layer links and blobs are
// separate, which is why the sweep deletes them in that order.

// rootPath is the prefix every driver path of the layout has.
const rootPath = "/docker/registry/v2"

// pathSpec is a typed location in registry storage.
type pathSpec interface{ isPathSpec() }

type (
	registryRootSpec struct{}
	lockSpec         struct{}
	repositoriesSpec struct{}
	blobsSpec        struct{ alg digest.Algorithm }
	blobSpec         struct{ dgst digest.Digest }
	blobDataSpec     struct{ dgst digest.Digest }
	repositorySpec   struct{ repo string }
	revisionsSpec    struct {
		repo string
		alg  digest.Algorithm
	}
	revisionSpec struct {
		repo string
		dgst digest.Digest
	}
	revisionLinkSpec struct {
		repo string
		dgst digest.Digest
	}
	tagsSpec       struct{ repo string }
	tagSpec        struct{ repo, tag string }
	tagCurrentSpec struct{ repo, tag string }
	tagIndexSpec   struct {
		repo, tag string
		alg       digest.Algorithm
	}
	tagIndexEntrySpec struct {
		repo, tag string
		dgst      digest.Digest
	}
	tagIndexLinkSpec struct {
		repo, tag string
		dgst      digest.Digest
	}
	layersSpec struct {
		repo string
		alg  digest.Algorithm
	}
	layerSpec struct {
		repo string
		dgst digest.Digest
	}
	layerLinkSpec struct {
		repo string
		dgst digest.Digest
	}
	uploadsSpec   struct{ repo string }
	uploadSpec    struct{ repo, id string }
	startedAtSpec struct{ repo, id string }
)

// The quarantine of an online run (quarantine.go).
type (
	quarantineSpec      struct{}
	quarantineSinceSpec struct{}
	quarantineBlobsSpec struct{ alg digest.Algorithm }
	// quarantinePrefixSpec is the directory of the blobs whose hex starts
	// as dgst's does (regkeeper-quarantine/sha256/ab), as in blobs/.
	quarantinePrefixSpec struct{ dgst digest.Digest }
	// quarantineDataSpec is a quarantined blob's data: one file named by
	// its hex in its prefix directory.
	quarantineDataSpec struct{ dgst digest.Digest }
)

// markCacheSpec is the mark cache (markcache.go).
type markCacheSpec struct{}

func (markCacheSpec) isPathSpec() {}

func (quarantineSpec) isPathSpec()       {}
func (quarantineSinceSpec) isPathSpec()  {}
func (quarantineBlobsSpec) isPathSpec()  {}
func (quarantinePrefixSpec) isPathSpec() {}
func (quarantineDataSpec) isPathSpec()   {}

func (registryRootSpec) isPathSpec()  {}
func (lockSpec) isPathSpec()          {}
func (repositoriesSpec) isPathSpec()  {}
func (blobsSpec) isPathSpec()         {}
func (blobSpec) isPathSpec()          {}
func (blobDataSpec) isPathSpec()      {}
func (repositorySpec) isPathSpec()    {}
func (revisionsSpec) isPathSpec()     {}
func (revisionSpec) isPathSpec()      {}
func (revisionLinkSpec) isPathSpec()  {}
func (tagsSpec) isPathSpec()          {}
func (tagSpec) isPathSpec()           {}
func (tagCurrentSpec) isPathSpec()    {}
func (tagIndexSpec) isPathSpec()      {}
func (tagIndexEntrySpec) isPathSpec() {}
func (tagIndexLinkSpec) isPathSpec()  {}
func (layersSpec) isPathSpec()        {}
func (layerSpec) isPathSpec()         {}
func (layerLinkSpec) isPathSpec()     {}
func (uploadsSpec) isPathSpec()       {}
func (uploadSpec) isPathSpec()        {}
func (startedAtSpec) isPathSpec()     {}

// pathFor maps a spec to its driver path. It panics on a spec it does not
// know, which is a programming error.
func pathFor(spec pathSpec) string {
	const repos = rootPath + "/repositories"
	const quarantine = rootPath + "/regkeeper-quarantine"
	switch s := spec.(type) {
	case registryRootSpec:
		return rootPath
	case lockSpec:
		return rootPath + "/regkeeper-gc.lock"
	case markCacheSpec:
		return rootPath + "/regkeeper-markcache"
	case repositoriesSpec:
		return repos
	case blobsSpec:
		return join(rootPath, "blobs", s.alg.String())
	case blobSpec:
		hex := s.dgst.Encoded()
		return join(rootPath, "blobs", s.dgst.Algorithm().String(), hex[:min(2, len(hex))], hex)
	case blobDataSpec:
		hex := s.dgst.Encoded()
		return join(rootPath, "blobs", s.dgst.Algorithm().String(), hex[:min(2, len(hex))], hex, "data")
	case repositorySpec:
		return join(repos, s.repo)
	case revisionsSpec:
		return join(repos, s.repo, "_manifests", "revisions", s.alg.String())
	case revisionSpec:
		return join(repos, s.repo, "_manifests", "revisions", s.dgst.Algorithm().String(), s.dgst.Encoded())
	case revisionLinkSpec:
		return join(repos, s.repo, "_manifests", "revisions", s.dgst.Algorithm().String(), s.dgst.Encoded(), "link")
	case tagsSpec:
		return join(repos, s.repo, "_manifests", "tags")
	case tagSpec:
		return join(repos, s.repo, "_manifests", "tags", s.tag)
	case tagCurrentSpec:
		return join(repos, s.repo, "_manifests", "tags", s.tag, "current", "link")
	case tagIndexSpec:
		return join(repos, s.repo, "_manifests", "tags", s.tag, "index", s.alg.String())
	case tagIndexEntrySpec:
		return join(repos, s.repo, "_manifests", "tags", s.tag, "index", s.dgst.Algorithm().String(), s.dgst.Encoded())
	case tagIndexLinkSpec:
		return join(repos, s.repo, "_manifests", "tags", s.tag, "index", s.dgst.Algorithm().String(), s.dgst.Encoded(), "link")
	case layersSpec:
		return join(repos, s.repo, "_layers", s.alg.String())
	case layerSpec:
		return join(repos, s.repo, "_layers", s.dgst.Algorithm().String(), s.dgst.Encoded())
	case layerLinkSpec:
		return join(repos, s.repo, "_layers", s.dgst.Algorithm().String(), s.dgst.Encoded(), "link")
	case uploadsSpec:
		return join(repos, s.repo, "_uploads")
	case uploadSpec:
		return join(repos, s.repo, "_uploads", s.id)
	case startedAtSpec:
		return join(repos, s.repo, "_uploads", s.id, "startedat")
	case quarantineSpec:
		return quarantine
	case quarantineSinceSpec:
		return quarantine + "/since"
	case quarantineBlobsSpec:
		return join(quarantine, s.alg.String())
	case quarantinePrefixSpec:
		hex := s.dgst.Encoded()
		return join(quarantine, s.dgst.Algorithm().String(), hex[:min(2, len(hex))])
	case quarantineDataSpec:
		hex := s.dgst.Encoded()
		return join(quarantine, s.dgst.Algorithm().String(), hex[:min(2, len(hex))], hex)
	}
	panic(fmt.Sprintf("gc: unknown path spec %T", spec))
}

// join is path.Join in one allocation for the clean names a registry's
// layout is made of (path.Clean returns a clean path as it is); gc builds a
// path for every link and blob it deletes.
func join(elem ...string) string {
	return path.Clean(strings.Join(elem, "/"))
}

// repoFromPath returns the repository name of a path under repositories/
// that ends in one of the repository's own directories (_manifests,
// _layers, _uploads), or "" if p is not such a path.
func repoFromPath(p string) string {
	rel, ok := strings.CutPrefix(p, pathFor(repositoriesSpec{})+"/")
	if !ok {
		return ""
	}
	dir, base := path.Split(rel)
	switch base {
	case "_manifests", "_layers", "_uploads":
		return strings.TrimSuffix(dir, "/")
	}
	return ""
}

// repoEntryKind is what a path inside a repository directory is.
type repoEntryKind int

const (
	entryOther       repoEntryKind = iota
	entryNested                    // a directory not starting with "_": another repository's namespace
	entryRevision                  // _manifests/revisions/sha256/<hex>/link
	entryTag                       // _manifests/tags/<tag> (directory)
	entryTagCurrent                // _manifests/tags/<tag>/current/link
	entryTagIndex                  // _manifests/tags/<tag>/index/sha256/<hex>/link
	entryLayer                     // _layers/sha256/<hex>/link
	entryUpload                    // _uploads/<id> (directory)
	entryUploadsRoot               // _uploads (directory)
)

// repoEntry is a path inside a repository, parsed.
type repoEntry struct {
	kind   repoEntryKind
	tag    string        // entryTag, entryTagCurrent, entryTagIndex
	digest digest.Digest // entryRevision, entryTagIndex, entryLayer (sha256, validated)
	id     string        // entryUpload
}

// parseRepoPath classifies a driver path found under repository repo's
// directory (as a storage walk yields it). Only sha256 links are
// recognised, as distribution writes them.
func parseRepoPath(repo, p string, isDir bool) repoEntry {
	rel, ok := strings.CutPrefix(p, pathFor(repositorySpec{repo})+"/")
	if !ok {
		return repoEntry{}
	}
	c := strings.Split(rel, "/")
	if isDir && len(c) == 1 && !strings.HasPrefix(c[0], "_") {
		return repoEntry{kind: entryNested}
	}
	sha := func(hex string) (digest.Digest, bool) {
		d := digest.NewDigestFromEncoded(digest.SHA256, hex)
		return d, d.Validate() == nil
	}
	switch {
	case isDir && len(c) == 1 && c[0] == "_uploads":
		return repoEntry{kind: entryUploadsRoot}
	case isDir && len(c) == 2 && c[0] == "_uploads":
		return repoEntry{kind: entryUpload, id: c[1]}
	case isDir && len(c) == 3 && c[0] == "_manifests" && c[1] == "tags":
		return repoEntry{kind: entryTag, tag: c[2]}
	case isDir:
		return repoEntry{}
	case len(c) == 5 && c[0] == "_manifests" && c[1] == "revisions" && c[2] == "sha256" && c[4] == "link":
		if d, ok := sha(c[3]); ok {
			return repoEntry{kind: entryRevision, digest: d}
		}
	case len(c) == 5 && c[0] == "_manifests" && c[1] == "tags" && c[3] == "current" && c[4] == "link":
		return repoEntry{kind: entryTagCurrent, tag: c[2]}
	case len(c) == 7 && c[0] == "_manifests" && c[1] == "tags" && c[3] == "index" && c[4] == "sha256" && c[6] == "link":
		if d, ok := sha(c[5]); ok {
			return repoEntry{kind: entryTagIndex, tag: c[2], digest: d}
		}
	case len(c) == 4 && c[0] == "_layers" && c[1] == "sha256" && c[3] == "link":
		if d, ok := sha(c[2]); ok {
			return repoEntry{kind: entryLayer, digest: d}
		}
	}
	return repoEntry{}
}
