package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"sort"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/regkeeper/regkeeper/internal/client"
	"github.com/regkeeper/regkeeper/internal/progress"
)

// RestoreOptions for Restore.
type RestoreOptions struct {
	Client client.Options
	// Repo and Tag select what is restored; nil selects everything. With a
	// tag filter, the referrers of the selected images are restored too.
	Repo, Tag *regexp.Regexp
	// DryRun plans and lists, and contacts no registry.
	DryRun   bool
	Progress *progress.Reporter
	Logger   *slog.Logger
}

// RestoreResult is what Restore did, or with DryRun would do.
type RestoreResult struct {
	DryRun bool `json:"dryRun"`
	// Images, Referrers and History count the index.json entries selected.
	Images           int `json:"images"`
	Referrers        int `json:"referrers"`
	History          int `json:"history"`
	ManifestsPushed  int `json:"manifestsPushed"`
	ManifestsSkipped int `json:"manifestsSkipped"`
	// BlobsPushed and BytesPushed: blobs uploaded; BlobsMounted: blobs
	// already uploaded to another repository by this run, mounted from
	// there (no transfer).
	BlobsPushed  int   `json:"blobsPushed"`
	BytesPushed  int64 `json:"bytesPushed"`
	BlobsMounted int   `json:"blobsMounted"`
	// BlobsSkipped and BytesSkipped: blobs the registry already had.
	BlobsSkipped    int            `json:"blobsSkipped"`
	BytesSkipped    int64          `json:"bytesSkipped"`
	Entries         []RestoreEntry `json:"entries"`
	Errors          []Error        `json:"errors"`
	DurationSeconds float64        `json:"durationSeconds"`
}

// RestoreEntry is one index.json entry selected for restore.
type RestoreEntry struct {
	Repository string `json:"repository"`
	// Tag is empty for referrers; history entries are pushed by digest
	// only.
	Tag       string `json:"tag,omitempty"`
	Kind      string `json:"kind"`
	Digest    string `json:"digest"`
	MediaType string `json:"mediaType"`
	// Manifests, Blobs and Bytes: what the entry needs in all (shared
	// content counted in each entry).
	Manifests int   `json:"manifests"`
	Blobs     int   `json:"blobs"`
	Bytes     int64 `json:"bytes"`
}

// repoPlan is what one repository receives, in push order: blobs, then
// manifests children first, then the tags.
type repoPlan struct {
	repo      string
	blobs     []v1.Descriptor
	manifests []planManifest // by digest, children before parents, referrers last
	tags      []planManifest // tag entries: PUT by tag
}

type planManifest struct {
	desc v1.Descriptor
	tag  string
	raw  []byte
}

// Restore pushes the backup at dir (or what opts select) to the registry at
// host. Every manifest is pushed as its stored bytes with its media type,
// so it keeps its digest; blobs and manifests the registry already has are
// not pushed again.
func Restore(ctx context.Context, dir, host string, opts RestoreOptions) (*RestoreResult, error) {
	start := time.Now()
	l := Layout{Root: dir}
	if err := l.Check(); err != nil {
		return nil, err
	}
	reg, err := opts.Client.Registry(host)
	if err != nil {
		return nil, err
	}
	entries, err := l.ReadIndex()
	if err != nil {
		return nil, err
	}
	res := &RestoreResult{DryRun: opts.DryRun, Entries: []RestoreEntry{}, Errors: []Error{}}
	plans := planRestore(l, entries, opts, res)
	if opts.DryRun || len(plans) == 0 {
		res.DurationSeconds = time.Since(start).Seconds()
		return res, nil
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ropts := opts.Client.Remote(ctx)
	pusher, err := remote.NewPusher(ropts...)
	if err != nil {
		return nil, err
	}
	var total int64
	for _, p := range plans {
		for _, b := range p.blobs {
			total += b.Size
		}
	}
	rs := &restorer{opts: opts, reg: reg, layout: l, pusher: pusher, log: log, res: res,
		bar: opts.Progress.Bytes(total, "restore"), sem: make(chan struct{}, opts.Client.JobCount())}
	defer rs.bar.Done()
	// Check the registry once, for a clear error rather than one per image.
	if _, err := transport.Ping(ctx, reg, opts.Client.RoundTripper()); err != nil {
		return nil, fmt.Errorf("contacting %s: %s", reg.RegistryStr(), client.Describe(err))
	}
	forEach(ctx, opts.Client.JobCount(), plans, func(p *repoPlan) {
		if err := rs.push(ctx, p); err != nil && ctx.Err() == nil {
			rs.addError(Error{Repository: p.repo, Error: client.Describe(err)})
		}
	})
	sort.Slice(res.Errors, func(i, j int) bool { return res.Errors[i].Repository < res.Errors[j].Repository })
	res.DurationSeconds = time.Since(start).Seconds()
	return res, ctx.Err()
}

// planRestore selects entries and orders what each repository needs.
func planRestore(l Layout, entries []Entry, opts RestoreOptions, res *RestoreResult) []*repoPlan {
	plans := map[string]*repoPlan{}
	seenManifest := map[string]map[v1.Hash]bool{}
	seenBlob := map[string]map[v1.Hash]bool{}
	// digests covered by selected tag entries, per repository, for the
	// referrers of a tag-filtered restore.
	covered := map[string]map[v1.Hash]bool{}

	add := func(e Entry) {
		repo := e.Repository()
		if repo == "" {
			res.Errors = append(res.Errors, Error{Digest: e.Digest.String(),
				Error: fmt.Sprintf("entry %q was not written by regkeeper backup (no %s annotation): no repository to restore it to", e.Annotations[AnnotationRefName], AnnotationRepository)})
			return
		}
		p := plans[repo]
		if p == nil {
			p = &repoPlan{repo: repo}
			plans[repo] = p
			seenManifest[repo] = map[v1.Hash]bool{}
			seenBlob[repo] = map[v1.Hash]bool{}
			covered[repo] = map[v1.Hash]bool{}
		}
		re := RestoreEntry{Repository: repo, Kind: e.Kind(), Digest: e.Digest.String(), MediaType: string(e.MediaType)}
		if e.Kind() != KindReferrer {
			re.Tag = e.Tag()
		}
		var ms []planManifest
		var bs []v1.Descriptor
		entryBlobs := map[v1.Hash]bool{}
		var walk func(d v1.Descriptor, absent map[v1.Hash]bool, top bool) error
		walk = func(d v1.Descriptor, absent map[v1.Hash]bool, top bool) error {
			raw, err := l.ReadBlob(d.Digest)
			if err != nil {
				return fmt.Errorf("manifest %s: %w", d.Digest, err)
			}
			rf, err := parseRefs(d.MediaType, raw)
			if err != nil {
				return fmt.Errorf("manifest %s: %w", d.Digest, err)
			}
			for _, c := range rf.Children {
				if absent[c.Digest] {
					continue
				}
				if err := walk(c, nil, false); err != nil {
					return err
				}
			}
			for _, b := range rf.Blobs {
				if !distributable(b) || entryBlobs[b.Digest] {
					continue
				}
				if !l.HasBlob(b.Digest, b.Size) {
					return fmt.Errorf("blob %s of %s is not in the backup (run regkeeper verify)", b.Digest, d.Digest)
				}
				entryBlobs[b.Digest] = true
				re.Blobs++
				re.Bytes += b.Size
				bs = append(bs, b)
			}
			re.Manifests++
			re.Bytes += int64(len(raw))
			if !top || e.Kind() != KindTag {
				ms = append(ms, planManifest{desc: v1.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size}, raw: raw})
			} else {
				p.tags = append(p.tags, planManifest{desc: v1.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size}, tag: e.Tag(), raw: raw})
			}
			covered[repo][d.Digest] = true
			return nil
		}
		if err := walk(e.Descriptor, e.Absent(), true); err != nil {
			res.Errors = append(res.Errors, Error{Repository: repo, Tag: re.Tag, Digest: e.Digest.String(), Error: err.Error()})
			return
		}
		for _, b := range bs {
			if !seenBlob[repo][b.Digest] {
				seenBlob[repo][b.Digest] = true
				p.blobs = append(p.blobs, b)
			}
		}
		for _, m := range ms {
			if !seenManifest[repo][m.desc.Digest] {
				seenManifest[repo][m.desc.Digest] = true
				p.manifests = append(p.manifests, m)
			}
		}
		switch e.Kind() {
		case KindTag:
			res.Images++
		case KindHistory:
			res.History++
		case KindReferrer:
			res.Referrers++
		}
		res.Entries = append(res.Entries, re)
	}

	repoOK := func(e Entry) bool { return opts.Repo == nil || opts.Repo.MatchString(e.Repository()) }
	tagOK := func(e Entry) bool { return opts.Tag == nil || opts.Tag.MatchString(e.Tag()) }
	// Tags first, then history (pushed by digest), then referrers, whose
	// subjects are then in place.
	for _, kind := range []string{KindTag, KindHistory} {
		for _, e := range entries {
			if e.Kind() == kind && repoOK(e) && tagOK(e) {
				add(e)
			}
		}
	}
	for _, e := range entries {
		if e.Kind() != KindReferrer || !repoOK(e) {
			continue
		}
		if opts.Tag != nil {
			s, err := v1.NewHash(e.Annotations[AnnotationSubject])
			if err != nil || !covered[e.Repository()][s] {
				continue
			}
		}
		add(e)
	}
	out := make([]*repoPlan, 0, len(plans))
	for _, p := range plans {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].repo < out[j].repo })
	return out
}

type restorer struct {
	opts   RestoreOptions
	reg    name.Registry
	layout Layout
	pusher *remote.Pusher
	log    *slog.Logger
	bar    *progress.Bar
	sem    chan struct{}

	// uploads maps a blob to the repository this run uploaded it to.
	uploads flight[string]

	mu  sync.Mutex
	res *RestoreResult
}

func (rs *restorer) push(ctx context.Context, p *repoPlan) error {
	repo := rs.reg.Repo(p.repo)
	hc, err := rs.httpClient(ctx, repo)
	if err != nil {
		return fmt.Errorf("authenticating to %s: %w", repo, err)
	}
	// Blobs, concurrently.
	var wg sync.WaitGroup
	errs := make([]error, len(p.blobs))
	for i, b := range p.blobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case rs.sem <- struct{}{}:
			case <-ctx.Done():
				errs[i] = ctx.Err()
				return
			}
			defer func() { <-rs.sem }()
			errs[i] = rs.pushBlob(ctx, hc, repo, b)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	// Manifests by digest, children first; then tags.
	for _, m := range p.manifests {
		if err := rs.pushManifest(ctx, hc, repo, m.desc.Digest.String(), m); err != nil {
			return err
		}
	}
	for _, m := range p.tags {
		if err := rs.pushManifest(ctx, hc, repo, m.tag, m); err != nil {
			rs.addError(Error{Repository: p.repo, Tag: m.tag, Digest: m.desc.Digest.String(), Error: client.Describe(err)})
		}
	}
	return nil
}

func (rs *restorer) pushBlob(ctx context.Context, hc *http.Client, repo name.Repository, b v1.Descriptor) error {
	ok, err := headBlob(ctx, hc, repo, b.Digest)
	if err != nil {
		return fmt.Errorf("checking blob %s: %w", b.Digest, err)
	}
	if ok {
		rs.mu.Lock()
		rs.res.BlobsSkipped++
		rs.res.BytesSkipped += b.Size
		rs.mu.Unlock()
		rs.bar.Add(b.Size)
		return nil
	}
	layer := &fileLayer{path: rs.layout.Blob(b.Digest), desc: b, progress: rs.bar.Add}
	// The first repository to need a blob uploads it; the others ask the
	// registry to mount it from there, transferring nothing.
	origin, err := rs.uploads.do(b.Digest.String(), func() (string, error) {
		if err := rs.pusher.Upload(ctx, repo, layer); err != nil {
			return "", err
		}
		rs.mu.Lock()
		rs.res.BlobsPushed++
		rs.res.BytesPushed += b.Size
		rs.mu.Unlock()
		return repo.RepositoryStr(), nil
	})
	if err != nil {
		return fmt.Errorf("uploading blob %s: %w", b.Digest, err)
	}
	if origin == repo.RepositoryStr() {
		return nil
	}
	// A registry that refuses the mount gets the blob uploaded instead
	// (go-containerregistry falls back).
	ml := &remote.MountableLayer{Layer: layer, Reference: rs.reg.Repo(origin).Digest(b.Digest.String())}
	if err := rs.pusher.Upload(ctx, repo, ml); err != nil {
		return fmt.Errorf("mounting blob %s from %s: %w", b.Digest, origin, err)
	}
	rs.mu.Lock()
	rs.res.BlobsMounted++
	rs.mu.Unlock()
	rs.bar.Add(b.Size)
	return nil
}

// pushManifest PUTs the stored bytes under ref (a digest or a tag) unless
// the registry already has them there. ggcr's remote.Put is not used: for
// a manifest with a subject it would rewrite the referrers fallback tag,
// which is restored as it was backed up.
func (rs *restorer) pushManifest(ctx context.Context, hc *http.Client, repo name.Repository, ref string, m planManifest) error {
	got, err := headManifest(ctx, hc, repo, ref, m.desc.MediaType)
	if err != nil {
		return fmt.Errorf("checking manifest %s: %w", ref, err)
	}
	if got == m.desc.Digest {
		rs.mu.Lock()
		rs.res.ManifestsSkipped++
		rs.mu.Unlock()
		return nil
	}
	u := fmt.Sprintf("%s://%s/v2/%s/manifests/%s", repo.Scheme(), repo.RegistryStr(), repo.RepositoryStr(), ref)
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, bytes.NewReader(m.raw))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", string(m.desc.MediaType))
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("pushing manifest %s:%s: %w", repo.RepositoryStr(), ref, err)
	}
	defer resp.Body.Close()
	if err := transport.CheckError(resp, http.StatusCreated, http.StatusOK, http.StatusAccepted); err != nil {
		return fmt.Errorf("pushing manifest %s (%s): %w", ref, m.desc.Digest, err)
	}
	if d := resp.Header.Get("Docker-Content-Digest"); d != "" && d != m.desc.Digest.String() {
		return fmt.Errorf("pushing manifest %s: registry stored it as %s, not %s", ref, d, m.desc.Digest)
	}
	rs.mu.Lock()
	rs.res.ManifestsPushed++
	rs.mu.Unlock()
	return nil
}

func (rs *restorer) addError(e Error) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.res.Errors = append(rs.res.Errors, e)
}

// httpClient is authorised to push to repo (and pull, for HEAD requests).
func (rs *restorer) httpClient(ctx context.Context, repo name.Repository) (*http.Client, error) {
	kc := rs.opts.Client.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	auth, err := authn.Resolve(ctx, kc, repo)
	if err != nil {
		return nil, err
	}
	rt := transport.NewUserAgent(rs.opts.Client.RoundTripper(), client.UserAgent())
	t, err := transport.NewWithContext(ctx, repo.Registry, auth, rt, []string{repo.Scope(transport.PushScope)})
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: t}, nil
}

func headBlob(ctx context.Context, hc *http.Client, repo name.Repository, d v1.Hash) (bool, error) {
	u := fmt.Sprintf("%s://%s/v2/%s/blobs/%s", repo.Scheme(), repo.RegistryStr(), repo.RepositoryStr(), d)
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, u, nil)
	if err != nil {
		return false, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusNotFound:
		return false, nil
	}
	return false, transport.CheckError(resp, http.StatusOK)
}

// headManifest returns the digest the registry has under ref, or the zero
// hash when it has none.
func headManifest(ctx context.Context, hc *http.Client, repo name.Repository, ref string, mt types.MediaType) (v1.Hash, error) {
	u := fmt.Sprintf("%s://%s/v2/%s/manifests/%s", repo.Scheme(), repo.RegistryStr(), repo.RepositoryStr(), ref)
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, u, nil)
	if err != nil {
		return v1.Hash{}, err
	}
	req.Header.Set("Accept", string(mt)+", "+acceptAll)
	resp, err := hc.Do(req)
	if err != nil {
		return v1.Hash{}, err
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return v1.Hash{}, nil
	}
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		return v1.Hash{}, err
	}
	h, err := v1.NewHash(resp.Header.Get("Docker-Content-Digest"))
	if err != nil {
		return v1.Hash{}, nil // no digest header: push to be sure
	}
	return h, nil
}

const acceptAll = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, " +
	"application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json"

// fileLayer is a blob of the layout, for uploading.
type fileLayer struct {
	path     string
	desc     v1.Descriptor
	progress func(int64)
}

func (f *fileLayer) Digest() (v1.Hash, error) { return f.desc.Digest, nil }
func (f *fileLayer) DiffID() (v1.Hash, error) {
	return v1.Hash{}, errors.New("backup blobs are uploaded compressed only")
}
func (f *fileLayer) Size() (int64, error)                { return f.desc.Size, nil }
func (f *fileLayer) MediaType() (types.MediaType, error) { return f.desc.MediaType, nil }
func (f *fileLayer) Uncompressed() (io.ReadCloser, error) {
	return nil, errors.New("backup blobs are uploaded compressed only")
}

func (f *fileLayer) Compressed() (io.ReadCloser, error) {
	file, err := os.Open(f.path)
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.TeeReader(file, progressWriter(f.progress)), file}, nil
}
