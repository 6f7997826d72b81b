package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"sync"
	"time"

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
	// Repo and Tag select what is restored, by the names the layout gives;
	// nil selects everything. With a tag filter, the referrers of the
	// selected images, and the signature and referrers fallback tags
	// attached to them, are restored too.
	Repo, Tag *regexp.Regexp
	// Repository is where entries whose org.opencontainers.image.ref.name
	// is a bare tag (as regctl and oras write it) are restored, and where
	// entries with no name at all are pushed by digest. Empty: such
	// entries are reported, not restored.
	Repository string
	// Map moves repositories (by prefix) from the names the layout gives
	// to others; the longest matching prefix wins.
	Map []Mapping
	// ReferrersDepth limits how deep referrers of referrers of what is
	// selected are restored: 1 is the referrers of the images themselves.
	// Zero or less means DefaultReferrersDepth. Referrers whose subject is
	// not in the layout at all are restored when no tag filter is given.
	ReferrersDepth int
	// Snapshot picks what is restored from a regkeeper backup: "" or
	// "latest" the latest complete snapshot (a layout without snapshots:
	// every entry of index.json, completeness unknown), an ID (or a
	// unique prefix) that snapshot, SnapshotAll every entry of index.json
	// (history entries and tags since deleted from the registry included).
	Snapshot string
	// DryRun plans and lists, and contacts no registry.
	DryRun   bool
	Progress *progress.Reporter
	Logger   *slog.Logger
}

// RestoreResult is what Restore did, or with DryRun would do.
type RestoreResult struct {
	DryRun bool `json:"dryRun"`
	// Snapshot is the backup run restored (nil: index.json); Completeness
	// as verify says it (CompletenessUnknown for a layout without
	// snapshots); Note says what an operator should know: the last run did
	// not finish, or nothing says the layout is complete.
	Snapshot     *SnapshotInfo `json:"snapshot"`
	Completeness string        `json:"completeness"`
	Note         string        `json:"note,omitempty"`
	// Images, Referrers and History count the index.json entries selected;
	// Attached, the signature and fallback tags a tag filter brought
	// along; Untagged, entries with no name pushed by digest into
	// --repository.
	Images           int `json:"images"`
	Referrers        int `json:"referrers"`
	History          int `json:"history"`
	Attached         int `json:"attached"`
	Untagged         int `json:"untagged"`
	ManifestsPushed  int `json:"manifestsPushed"`
	ManifestsSkipped int `json:"manifestsSkipped"`
	// BlobsPushed and BytesPushed: blobs uploaded; BlobsMounted: blobs
	// already uploaded to another repository by this run, mounted from
	// there (no transfer).
	BlobsPushed  int   `json:"blobsPushed"`
	BytesPushed  int64 `json:"bytesPushed"`
	BlobsMounted int   `json:"blobsMounted"`
	// BlobsSkipped and BytesSkipped: blobs the registry already had.
	BlobsSkipped int   `json:"blobsSkipped"`
	BytesSkipped int64 `json:"bytesSkipped"`
	// ReferrersTagsWritten counts the referrers fallback tags
	// (sha256-<hex>) created or extended on a registry without the
	// referrers API, so that clients find the restored referrers there.
	ReferrersTagsWritten int            `json:"referrersTagsWritten"`
	Entries              []RestoreEntry `json:"entries"`
	Errors               []Error        `json:"errors"`
	DurationSeconds      float64        `json:"durationSeconds"`
}

// RestoreEntry is one index.json entry selected for restore.
type RestoreEntry struct {
	// Repository the entry is restored to.
	Repository string `json:"repository"`
	// Tag is empty for referrers and untagged entries; history entries
	// are pushed by digest only.
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

// repoPlan is what one repository receives, in push order: blobs;
// manifests by digest, children before parents; tags; referrers by digest,
// subjects before their referrers; then the referrers lists.
type repoPlan struct {
	repo      string
	blobs     []v1.Descriptor
	manifests []planManifest
	tags      []planManifest
	referrers []planManifest
	// fallback holds the referrers fallback tags (sha256-<hex>) of the
	// layout, by subject: pushed as they are to a registry with the
	// referrers API, merged into the registry's own otherwise.
	fallback map[v1.Hash]planManifest
	// listed is, by subject, the referrers list entry of every manifest
	// with a subject that this repository receives.
	listed map[v1.Hash][]v1.Descriptor
	// sources are, by blob, the repositories the layout names for the
	// entries that need it, when --map moves them elsewhere: restored into
	// the registry they came from, the blob is mounted from there.
	sources map[v1.Hash][]string
}

type planManifest struct {
	desc v1.Descriptor
	tag  string
	raw  []byte
}

// Restore pushes the OCI image layout at dir (a regkeeper backup or one
// written by another tool), or what opts select, to the registry at host.
// Every manifest is pushed as its stored bytes with its media type, so it
// keeps its digest; blobs and manifests the registry already has are not
// pushed again.
func Restore(ctx context.Context, dir, host string, opts RestoreOptions) (*RestoreResult, error) {
	return RestoreLayout(ctx, Layout{Root: dir}, host, opts)
}

// RestoreLayout is Restore from a layout anywhere (OpenTarget).
func RestoreLayout(ctx context.Context, l Layout, host string, opts RestoreOptions) (*RestoreResult, error) {
	start := time.Now()
	if err := l.Check(); err != nil {
		return nil, err
	}
	reg, err := opts.Client.Registry(host)
	if err != nil {
		return nil, err
	}
	res := &RestoreResult{DryRun: opts.DryRun, Entries: []RestoreEntry{}, Errors: []Error{}}
	entries, err := restoreEntries(l, opts.Snapshot, res)
	if err != nil {
		return nil, err
	}
	cache := &manifestCache{l: l}
	placements, errs := placeEntries(cache, entries, opts)
	res.Errors = append(res.Errors, errs...)
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	plans := planRestore(cache, placements, opts, res, log)
	if opts.DryRun || len(plans) == 0 {
		res.DurationSeconds = time.Since(start).Seconds()
		return res, nil
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
	// Credentials the registry refuses are refused for every repository:
	// the first refusal stops the run, as one error.
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	var authOnce sync.Once
	var authErr error
	forEach(pctx, opts.Client.JobCount(), plans, func(p *repoPlan) {
		err := rs.push(pctx, p)
		switch {
		case err == nil:
		case refused(err):
			authOnce.Do(func() {
				authErr = err
				stop()
			})
		case pctx.Err() == nil:
			rs.addError(Error{Repository: p.repo, Error: client.Describe(err)})
		}
	})
	sort.SliceStable(res.Errors, func(i, j int) bool { return res.Errors[i].Repository < res.Errors[j].Repository })
	res.DurationSeconds = time.Since(start).Seconds()
	if authErr != nil && ctx.Err() == nil {
		return res, fmt.Errorf("pushing to %s: %s", reg.RegistryStr(), client.Describe(authErr))
	}
	return res, ctx.Err()
}

// SnapshotAll restores every entry of index.json.
const SnapshotAll = "all"

// restoreEntries picks the entries to restore: those of the snapshot asked
// for, or of index.json; and says in res which and how complete.
func restoreEntries(l Layout, which string, res *RestoreResult) ([]Entry, error) {
	snaps, err := l.ReadSnapshots()
	if err != nil {
		return nil, err
	}
	res.Completeness = CompletenessUnknown
	var last *Snapshot
	if len(snaps) > 0 {
		last = snaps[len(snaps)-1]
		res.Completeness = CompletenessIncomplete
		if last.Complete() {
			res.Completeness = CompletenessComplete
		}
	}
	unfinished := ""
	if last != nil && !last.Complete() {
		unfinished = fmt.Sprintf("the last backup run (snapshot %s, %s) did not finish", last.ID, last.Time.Format(time.RFC3339))
	}
	if which == SnapshotAll || (len(snaps) == 0 && (which == "" || which == "latest")) {
		switch {
		case len(snaps) == 0:
			res.Note = "this layout has no snapshot (a backup made before regkeeper recorded its runs, or another tool's layout): nothing says it holds every image the registry had"
		case unfinished != "":
			res.Note = unfinished + "; restoring every entry of index.json"
		}
		return l.ReadIndex()
	}
	if which == "" {
		which = "latest"
	}
	if which == "latest" && latestComplete(snaps) == nil {
		return nil, fmt.Errorf("%w: no backup run has completed (%s); --snapshot ID restores what an unfinished run backed up, --snapshot all every entry of index.json", ErrNoSnapshot, unfinished)
	}
	s, err := FindSnapshot(snaps, which)
	if err != nil {
		return nil, err
	}
	in := s.Info()
	res.Snapshot = &in
	switch {
	case !s.Complete():
		res.Note = fmt.Sprintf("snapshot %s is of a run that did not finish (%s): it holds part of the registry", s.ID, s.Reason)
	case unfinished != "":
		res.Note = unfinished + fmt.Sprintf("; restoring snapshot %s (%s), the latest complete", s.ID, s.Time.Format(time.RFC3339))
	}
	return s.Entries(), nil
}

// planRestore selects entries and orders what each repository needs:
// first the tag, history and untagged entries the filters select, then,
// level by level down to the depth limit, the referrers and attached tags
// (signatures, fallback tags) of what is selected so far.
func planRestore(c *manifestCache, placements []placed, opts RestoreOptions, res *RestoreResult, log *slog.Logger) []*repoPlan {
	plans := map[string]*repoPlan{}
	seenManifest := map[string]map[v1.Hash]bool{}
	seenBlob := map[string]map[v1.Hash]bool{}
	// manifests reached by the selected entries, per repository.
	covered := map[string]map[v1.Hash]bool{}

	add := func(pl placed, attached bool) {
		repo := pl.repo
		p := plans[repo]
		if p == nil {
			p = &repoPlan{repo: repo, fallback: map[v1.Hash]planManifest{}, listed: map[v1.Hash][]v1.Descriptor{}, sources: map[v1.Hash][]string{}}
			plans[repo] = p
			seenManifest[repo] = map[v1.Hash]bool{}
			seenBlob[repo] = map[v1.Hash]bool{}
			covered[repo] = map[v1.Hash]bool{}
		}
		re := RestoreEntry{Repository: repo, Tag: pl.tag, Kind: pl.kind, Digest: pl.Digest.String(), MediaType: string(pl.MediaType)}
		if pl.kind == KindReferrer || pl.kind == KindUntagged {
			re.Tag = ""
		}
		var ms []planManifest
		var top planManifest
		var bs []v1.Descriptor
		entryBlobs := map[v1.Hash]bool{}
		var walk func(d v1.Descriptor, absent map[v1.Hash]bool, isTop bool) error
		walk = func(d v1.Descriptor, absent map[v1.Hash]bool, isTop bool) error {
			m := c.get(d)
			if m.err != nil {
				return m.err
			}
			for _, ch := range m.refs.Children {
				if absent[ch.Digest] {
					continue
				}
				if err := walk(ch, nil, false); err != nil {
					return err
				}
			}
			for _, b := range m.refs.Blobs {
				if !distributable(b) || entryBlobs[b.Digest] {
					continue
				}
				if !c.l.HasBlob(b.Digest, b.Size) {
					return fmt.Errorf("blob %s of %s is not in the layout (run regkeeper verify)", b.Digest, d.Digest)
				}
				entryBlobs[b.Digest] = true
				re.Blobs++
				re.Bytes += b.Size
				bs = append(bs, b)
			}
			re.Manifests++
			re.Bytes += int64(len(m.raw))
			pm := planManifest{desc: v1.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size}, raw: m.raw}
			if isTop {
				top = pm
			} else {
				ms = append(ms, pm)
			}
			return nil
		}
		if err := walk(pl.Descriptor, pl.Absent(), true); err != nil {
			res.Errors = append(res.Errors, Error{Repository: repo, Tag: re.Tag, Digest: pl.Digest.String(), Error: err.Error()})
			return
		}
		for _, b := range bs {
			if !seenBlob[repo][b.Digest] {
				seenBlob[repo][b.Digest] = true
				p.blobs = append(p.blobs, b)
			}
			if pl.source != "" && pl.source != repo && !slices.Contains(p.sources[b.Digest], pl.source) {
				p.sources[b.Digest] = append(p.sources[b.Digest], pl.source)
			}
		}
		note := func(m planManifest) {
			covered[repo][m.desc.Digest] = true
			if ri, ok := parseReferrer(m.desc, m.raw); ok {
				for _, d := range p.listed[ri.Subject] {
					if d.Digest == m.desc.Digest {
						return
					}
				}
				p.listed[ri.Subject] = append(p.listed[ri.Subject], ri.Descriptor)
			}
		}
		for _, m := range ms {
			if !seenManifest[repo][m.desc.Digest] {
				seenManifest[repo][m.desc.Digest] = true
				p.manifests = append(p.manifests, m)
				note(m)
			}
		}
		switch pl.kind {
		case KindTag:
			top.tag = pl.tag
			if s, ok := fallbackSubject(pl.tag); ok && top.desc.MediaType == types.OCIImageIndex {
				p.fallback[s] = top
			} else {
				p.tags = append(p.tags, top)
			}
			note(top)
		case KindReferrer:
			if !seenManifest[repo][top.desc.Digest] {
				seenManifest[repo][top.desc.Digest] = true
				p.referrers = append(p.referrers, top)
				note(top)
			}
		default: // history, untagged: by digest
			if !seenManifest[repo][top.desc.Digest] {
				seenManifest[repo][top.desc.Digest] = true
				p.manifests = append(p.manifests, top)
				note(top)
			}
		}
		switch {
		case attached:
			res.Attached++
		case pl.kind == KindTag:
			res.Images++
		case pl.kind == KindHistory:
			res.History++
		case pl.kind == KindReferrer:
			res.Referrers++
		case pl.kind == KindUntagged:
			res.Untagged++
		}
		res.Entries = append(res.Entries, re)
	}

	repoOK := func(p placed) bool { return opts.Repo == nil || opts.Repo.MatchString(p.source) }
	tagOK := func(p placed) bool { return opts.Tag == nil || opts.Tag.MatchString(p.tag) }
	added := make([]bool, len(placements))
	for _, kind := range []string{KindTag, KindHistory, KindUntagged} {
		for i, p := range placements {
			if p.kind == kind && repoOK(p) && tagOK(p) {
				add(p, false)
				added[i] = true
			}
		}
	}
	// attachedSubject is what a referrer or attached tag hangs from.
	attachedSubject := func(p placed) (v1.Hash, bool) {
		switch p.kind {
		case KindReferrer:
			return p.subject, true
		case KindTag:
			if hex, ok := attachedTo(p.tag); ok {
				return v1.Hash{Algorithm: "sha256", Hex: hex}, true
			}
		}
		return v1.Hash{}, false
	}
	for depth := 1; depth <= referrersDepth(opts.ReferrersDepth); depth++ {
		var level []int
		for i, p := range placements {
			if added[i] || !repoOK(p) {
				continue
			}
			if s, ok := attachedSubject(p); ok && covered[p.repo][s] {
				level = append(level, i)
			}
		}
		if len(level) == 0 {
			break
		}
		for _, i := range level {
			add(placements[i], placements[i].kind == KindTag)
			added[i] = true
		}
	}
	// Without a tag filter, referrers whose subject the layout does not
	// hold are restored too (there is no chain to measure); those deeper
	// than the limit are not.
	if opts.Tag == nil {
		var inLayout map[v1.Hash]bool
		for i, p := range placements {
			if added[i] || p.kind != KindReferrer || !repoOK(p) {
				continue
			}
			if inLayout == nil {
				inLayout = map[v1.Hash]bool{}
				for _, q := range placements {
					c.reach(q.Descriptor, q.Absent(), func(d v1.Hash) { inLayout[d] = true })
				}
			}
			if inLayout[p.subject] {
				log.Info("referrer deeper than the referrers depth limit: not restored", "repository", p.repo, "digest", p.Digest.String())
				continue
			}
			add(p, false)
			added[i] = true
		}
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
			errs[i] = rs.pushBlob(ctx, hc, repo, b, p.sources[b.Digest])
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
	for _, m := range p.referrers {
		if err := rs.pushManifest(ctx, hc, repo, m.desc.Digest.String(), m); err != nil {
			return err
		}
	}
	return rs.pushReferrersLists(ctx, hc, repo, p)
}

// refused reports a 401: the registry refuses the credentials.
func refused(err error) bool {
	var terr *transport.Error
	return errors.As(err, &terr) && terr.StatusCode == http.StatusUnauthorized
}

// mountSource returns one of sources (repositories of this registry) that
// has blob d, or "" when none does.
func (rs *restorer) mountSource(ctx context.Context, d v1.Hash, sources []string) string {
	for _, src := range sources {
		repo := rs.reg.Repo(src)
		hc, err := rs.opts.Client.HTTPClient(ctx, repo, transport.PullScope)
		if err != nil {
			continue
		}
		if ok, err := headBlob(ctx, hc, repo, d); err == nil && ok {
			return src
		}
	}
	return ""
}

func (rs *restorer) pushBlob(ctx context.Context, hc *http.Client, repo name.Repository, b v1.Descriptor, sources []string) error {
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
	layer := &fileLayer{l: rs.layout, path: rs.layout.Blob(b.Digest), desc: b, progress: rs.bar.Add}
	// The first repository to need a blob uploads it; the others ask the
	// registry to mount it from there, transferring nothing.
	origin, err := rs.uploads.do(b.Digest.String(), func() (string, error) {
		// Restored (--map) into the registry the backup came from: the
		// blob is there already, in the repository it came from.
		if src := rs.mountSource(ctx, b.Digest, sources); src != "" {
			ml := &remote.MountableLayer{Layer: layer, Reference: rs.reg.Repo(src).Digest(b.Digest.String())}
			if err := rs.pusher.Upload(ctx, repo, ml); err != nil {
				return "", fmt.Errorf("mounting from %s: %w", src, err)
			}
			rs.mu.Lock()
			rs.res.BlobsMounted++
			rs.mu.Unlock()
			rs.bar.Add(b.Size)
			return repo.RepositoryStr(), nil
		}
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
	if err := putManifest(ctx, hc, repo, ref, m.desc.MediaType, m.raw, m.desc.Digest); err != nil {
		return err
	}
	rs.mu.Lock()
	rs.res.ManifestsPushed++
	rs.mu.Unlock()
	return nil
}

// putManifest PUTs raw under ref and checks the registry kept digest want.
func putManifest(ctx context.Context, hc *http.Client, repo name.Repository, ref string, mt types.MediaType, raw []byte, want v1.Hash) error {
	u := fmt.Sprintf("%s://%s/v2/%s/manifests/%s", repo.Scheme(), repo.RegistryStr(), repo.RepositoryStr(), ref)
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, bytes.NewReader(raw))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", string(mt))
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("pushing manifest %s:%s: %w", repo.RepositoryStr(), ref, err)
	}
	defer resp.Body.Close()
	if err := transport.CheckError(resp, http.StatusCreated, http.StatusOK, http.StatusAccepted); err != nil {
		return fmt.Errorf("pushing manifest %s (%s): %w", ref, want, err)
	}
	if d := resp.Header.Get("Docker-Content-Digest"); d != "" && d != want.String() {
		return fmt.Errorf("pushing manifest %s: registry stored it as %s, not %s", ref, d, want)
	}
	return nil
}

func (rs *restorer) addError(e Error) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.res.Errors = append(rs.res.Errors, e)
}

// httpClient is authorised to push to repo (and pull, for HEAD requests).
func (rs *restorer) httpClient(ctx context.Context, repo name.Repository) (*http.Client, error) {
	return rs.opts.Client.HTTPClient(ctx, repo, transport.PushScope)
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
	l        Layout
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
	file, err := f.l.open(f.path)
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.TeeReader(file, progressWriter(f.progress)), file}, nil
}
