package gc

import (
	"context"
	"fmt"
	"path"
	"strings"
	"sync"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/opencontainers/go-digest"
)

// TagLink is what storage says of a tag: the digest its current link
// names and that link's modification time, which is when the tag was last
// pushed (distribution rewrites the link on every push of the tag).
type TagLink struct {
	Digest   string
	Modified time.Time
}

// TagLinks reads every tag of repository repo from storage, jobs links at
// a time, with gc's reader (on the filesystem, below the driver). A
// repository with no tags has none; a link that does not parse is an
// error naming it.
func TagLinks(ctx context.Context, d storagedriver.StorageDriver, repo string, jobs int) (map[string]TagLink, error) {
	if fsReaderFor(d) != nil && !tagLinksByScan {
		return tagLinksListed(ctx, d, repo, jobs)
	}
	s, err := scanRepository(ctx, d, nil, repo, true)
	if err != nil {
		return nil, fmt.Errorf("reading the tags of %s in storage: %w", repo, err)
	}
	tags := make([]string, 0, len(s.current))
	for t := range s.current {
		tags = append(tags, t)
	}
	out := make(map[string]TagLink, len(tags))
	var mu sync.Mutex
	err = forEach(ctx, jobs, len(tags), func(i int) error {
		tag := tags[i]
		b, err := getContent(ctx, d, pathFor(tagCurrentSpec{repo, tag}))
		if isNotFound(err) {
			return nil // untagged since the walk
		}
		if err != nil {
			return fmt.Errorf("reading tag %s of %s in storage: %w", tag, repo, err)
		}
		dg, err := digest.Parse(strings.TrimSpace(string(b)))
		if err != nil {
			return fmt.Errorf("reading tag %s of %s in storage: %w", tag, repo, err)
		}
		mu.Lock()
		out[tag] = TagLink{Digest: dg.String(), Modified: s.current[tag]}
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// SignatureSubject recognises cosign tags (sha256-<hex>.sig, .att, .sbom)
// and referrers fallback tags (sha256-<hex>) and returns their subject.
func SignatureSubject(tag string) (string, bool) {
	d, ok := signatureSubject(tag)
	return d.String(), ok
}

// tagLinksByScan makes TagLinks scan on the filesystem too (a benchmark
// compares the two).
var tagLinksByScan = false

// tagLinksListed is TagLinks on the filesystem: one listing of the tags
// directory, then each tag's current link read and stat'ed, jobs at a
// time, without the scan of every tag's index (its history) that gc needs
// and retention does not. On an object store the scan, a listing of 1,000
// keys a request, is the cheaper way.
func tagLinksListed(ctx context.Context, d storagedriver.StorageDriver, repo string, jobs int) (map[string]TagLink, error) {
	f := fsReaderFor(d)
	entries, err := d.List(ctx, pathFor(tagsSpec{repo}))
	if isNotFound(err) {
		return map[string]TagLink{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing the tags of %s in storage: %w", repo, err)
	}
	out := make(map[string]TagLink, len(entries))
	var mu sync.Mutex
	err = forEach(ctx, jobs, len(entries), func(i int) error {
		tag := path.Base(entries[i])
		p := pathFor(tagCurrentSpec{repo, tag})
		b, err := f.readFile(p)
		if isNotFound(err) {
			return nil // untagged since the listing
		}
		if err != nil {
			return fmt.Errorf("reading tag %s of %s in storage: %w", tag, repo, err)
		}
		fi, err := d.Stat(ctx, p)
		if isNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading tag %s of %s in storage: %w", tag, repo, err)
		}
		dg, err := digest.Parse(strings.TrimSpace(string(b)))
		if err != nil {
			return fmt.Errorf("reading tag %s of %s in storage: %w", tag, repo, err)
		}
		mu.Lock()
		out[tag] = TagLink{Digest: dg.String(), Modified: fi.ModTime()}
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
