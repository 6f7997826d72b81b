// The sweep: carrying a plan out in crash-safe order.

package gc

import (
	"context"
	"fmt"
	"path"
	"sort"
	"strings"
	"sync"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/opencontainers/go-digest"

	"github.com/regkeeper/regkeeper/internal/progress"
)

// Execute carries the plan out in crash-safe order: orphan signature tags,
// manifests (tag-history entries, then the revision), layer links, blobs,
// uploads, empty repositories. Within a phase, deletions run opts.Jobs at a
// time (on an object store each is a round trip or two); a phase starts
// when the one before it has finished. It stops at the first failure and
// returns what it did so far with the error; running gc again finishes the
// job.
func (p *Plan) Execute(ctx context.Context, d storagedriver.StorageDriver) (*Report, error) {
	opts := p.opts
	r := &Report{Kept: p.Kept, Repositories: []RepoReport{}}
	acc := newAccount(p.owner)
	var mu sync.Mutex // guards r and acc, and serialises beforeDelete
	done := func() *Report {
		mu.Lock()
		defer mu.Unlock()
		acc.fill(r)
		sort.Strings(r.RepositoriesDeleted)
		r.DurationSeconds = opts.Now().Sub(p.start).Seconds()
		return r
	}
	del := func(path string) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if opts.beforeDelete != nil {
			mu.Lock()
			err := opts.beforeDelete(path)
			mu.Unlock()
			if err != nil {
				return err
			}
		}
		if err := d.Delete(ctx, path); err != nil && !isNotFound(err) {
			return fmt.Errorf("deleting %s: %w", path, err)
		}
		return nil
	}
	// count runs f under the lock, for the report.
	count := func(f func()) {
		mu.Lock()
		f()
		mu.Unlock()
	}
	each := func(n int, fn func(i int) error) error { return forEach(ctx, opts.Jobs, n, fn) }
	// On S3, links and blobs go 1,000 keys a request (not with the test
	// hook, which must see every path).
	var s3b *s3Batch
	if opts.beforeDelete == nil {
		s3b = newS3Batch(d)
	}
	bar := opts.Progress.Count(int64(len(p.Tags)+len(p.Manifests)+len(p.LayerLinks)+len(p.Blobs)+len(p.Uploads)+len(p.EmptyRepos)), "sweeping")
	defer bar.Done()

	err := each(len(p.Tags), func(i int) error {
		t := p.Tags[i]
		if err := del(pathFor(tagSpec{t.Repository, t.Tag})); err != nil {
			return err
		}
		opts.Logger.Info("deleted orphan signature tag", "repository", t.Repository, "tag", t.Tag)
		count(func() { r.TagsDeleted++ })
		bar.Add(1)
		return nil
	})
	if err != nil {
		return done(), err
	}
	// Pushes since the plan was made are re-read before each phase that
	// could hurt them: a tag moved back onto a planned manifest, a layer
	// link or revision rewritten by a push that found its blobs present.
	// Anything written within Grace before the plan was spared by the plan
	// already; re-reading from there keeps the two views consistent.
	// Manifests go one repository at a time: its tags are re-read, then its
	// manifests deleted concurrently.
	since := p.start.Add(-opts.Grace)
	for start := 0; start < len(p.Manifests); {
		repo := p.Manifests[start].Repository
		end := start
		for end < len(p.Manifests) && p.Manifests[end].Repository == repo {
			end++
		}
		retagged, err := recentlyReferenced(ctx, d, repo, since, true)
		if err != nil {
			return done(), err
		}
		batch := p.Manifests[start:end]
		if s3b != nil {
			var files []string
			var gone []ManifestDeletion
			for _, m := range batch {
				if retagged[m.Digest] {
					opts.Logger.Warn("gc: manifest tagged again during the run, kept", "repository", m.Repository, "digest", m.Digest)
					continue
				}
				for _, tag := range m.HistoryTags {
					files = append(files, pathFor(tagIndexLinkSpec{m.Repository, tag, m.Digest}))
				}
				files = append(files, pathFor(revisionLinkSpec{m.Repository, m.Digest}))
				gone = append(gone, m)
			}
			if err := s3b.deleteFiles(ctx, files, opts.Jobs); err != nil {
				return done(), err
			}
			count(func() {
				for _, m := range gone {
					acc.manifest(m.Repository)
				}
			})
			bar.Add(int64(len(batch)))
			start = end
			continue
		}
		err = each(len(batch), func(i int) error {
			m := batch[i]
			if retagged[m.Digest] {
				opts.Logger.Warn("gc: manifest tagged again during the run, kept", "repository", m.Repository, "digest", m.Digest)
				return nil
			}
			for _, tag := range m.HistoryTags {
				if err := del(pathFor(tagIndexEntrySpec{m.Repository, tag, m.Digest})); err != nil {
					return err
				}
			}
			if err := del(pathFor(revisionSpec{m.Repository, m.Digest})); err != nil {
				return err
			}
			opts.Logger.Info("deleted manifest", "repository", m.Repository, "digest", m.Digest)
			count(func() { acc.manifest(m.Repository) })
			bar.Add(1)
			return nil
		})
		if err != nil {
			return done(), err
		}
		start = end
	}
	fresh := map[digest.Digest]bool{}
	repos := p.allRepos()
	err = each(len(repos), func(i int) error {
		refs, err := recentlyReferenced(ctx, d, repos[i], since, false)
		if err != nil {
			return err
		}
		count(func() {
			for dg := range refs {
				fresh[dg] = true
			}
		})
		return nil
	})
	if err != nil {
		return done(), err
	}
	if s3b != nil {
		var files []string
		for _, l := range p.LayerLinks {
			if !fresh[l.Digest] {
				files = append(files, pathFor(layerLinkSpec{l.Repository, l.Digest}))
			}
		}
		if err := s3b.deleteFiles(ctx, files, opts.Jobs); err != nil {
			return done(), err
		}
		count(func() { r.LayerLinksDeleted += len(files) })
		bar.Add(int64(len(p.LayerLinks)))
		files = files[:0]
		var gone []BlobDeletion
		for _, b := range p.Blobs {
			if fresh[b.Digest] {
				opts.Logger.Warn("gc: blob referenced by a push during the run, kept", "digest", b.Digest)
				continue
			}
			files = append(files, pathFor(blobDataSpec{b.Digest}))
			gone = append(gone, b)
		}
		if err := s3b.deleteFiles(ctx, files, opts.Jobs); err != nil {
			return done(), err
		}
		count(func() {
			for _, b := range gone {
				acc.blob(b)
			}
		})
		bar.Add(int64(len(p.Blobs)))
		return p.executeRest(ctx, del, each, r, count, bar, done)
	}
	err = each(len(p.LayerLinks), func(i int) error {
		l := p.LayerLinks[i]
		if fresh[l.Digest] {
			return nil
		}
		if err := del(pathFor(layerSpec{l.Repository, l.Digest})); err != nil {
			return err
		}
		count(func() { r.LayerLinksDeleted++ })
		bar.Add(1)
		return nil
	})
	if err != nil {
		return done(), err
	}
	err = each(len(p.Blobs), func(i int) error {
		b := p.Blobs[i]
		if fresh[b.Digest] {
			opts.Logger.Warn("gc: blob referenced by a push during the run, kept", "digest", b.Digest)
			return nil
		}
		if err := del(pathFor(blobSpec{b.Digest})); err != nil {
			return err
		}
		opts.Logger.Debug("deleted blob", "digest", b.Digest, "size", b.Size)
		count(func() { acc.blob(b) })
		bar.Add(1)
		return nil
	})
	if err != nil {
		return done(), err
	}
	return p.executeRest(ctx, del, each, r, count, bar, done)
}

// executeRest deletes abandoned uploads and empty repositories, the last
// phases of Execute.
func (p *Plan) executeRest(ctx context.Context, del func(string) error, each func(int, func(int) error) error,
	r *Report, count func(func()), bar *progress.Bar, done func() *Report) (*Report, error) {
	opts := p.opts
	err := each(len(p.Uploads), func(i int) error {
		u := p.Uploads[i]
		if err := del(pathFor(uploadSpec{u.Repository, u.ID})); err != nil {
			return err
		}
		count(func() { r.UploadsDeleted++ })
		bar.Add(1)
		return nil
	})
	if err != nil {
		return done(), err
	}
	err = each(len(p.EmptyRepos), func(i int) error {
		repo := p.EmptyRepos[i]
		// A repository can hold others (a and a/b): then only its own
		// directories go.
		paths := []string{pathFor(repositorySpec{repo})}
		if p.hasNested(repo) {
			paths = []string{pathFor(tagsSpec{repo}), path.Dir(pathFor(revisionsSpec{repo, digest.SHA256})),
				path.Dir(pathFor(layersSpec{repo, digest.SHA256})), pathFor(uploadsSpec{repo})}
		}
		for _, dp := range paths {
			if err := del(dp); err != nil {
				return err
			}
		}
		opts.Logger.Info("deleted empty repository", "repository", repo)
		count(func() { r.RepositoriesDeleted = append(r.RepositoriesDeleted, repo) })
		bar.Add(1)
		return nil
	})
	return done(), err
}

// hasNested tells whether the plan read a repository inside repo.
func (p *Plan) hasNested(repo string) bool {
	for _, r := range p.repos {
		if strings.HasPrefix(r, repo+"/") {
			return true
		}
	}
	return false
}

// allRepos are the repositories read by the plan.
func (p *Plan) allRepos() []string { return p.repos }
