// Package audit finds, for every image of a registry and each of its
// platforms, the base image it was built on, and judges that base against a
// policy: too old, banned, not allowed, or replaced under its tag since.
//
// Detection, strongest evidence first (the README): the
// org.opencontainers.image.base.name/.digest annotations, checked against
// the layers; the longest proper prefix of the image's diff_ids that is the
// complete layer list of another image in the registry (one index for the
// whole registry); the image's own history timestamps. A base named by
// annotation that cannot be read (collected by gc since, or on another
// registry) is dated by the image's own history, so that a finding does not
// depend on an untagged manifest surviving gc.
//
// The image rules judge the image itself (rules.go): its age, whether only
// "latest" names it, its required labels, and whether a signature and an
// SBOM are attached.
package audit

import (
	"cmp"
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/regkeeper/regkeeper/internal/patterns"
	"github.com/regkeeper/regkeeper/internal/walk"
	"github.com/regkeeper/regkeeper/inventory"
)

// Reasons, worst first; the order is the table's.
const (
	ReasonBanned     = "base-banned"
	ReasonNotAllowed = "base-not-allowed"
	ReasonOutdated   = "base-outdated"
	ReasonTooOld     = "base-too-old"
	// ReasonImageTooOld: the image itself was built longer ago than
	// Policy.MaxImageAge.
	ReasonImageTooOld = "image-too-old"
	// ReasonUnsigned: Policy.RequireSignature and no signature is attached.
	ReasonUnsigned = "unsigned"
	// ReasonNoSBOM: Policy.RequireSBOM and no SBOM is attached.
	ReasonNoSBOM = "no-sbom"
	// ReasonLatestOnly: the image is reachable only through the tag
	// "latest" of its repository (Policy.TagLatestOnly).
	ReasonLatestOnly = "tag-latest-only"
	// ReasonMissingLabel: a label of Policy.RequireLabels is absent from
	// the image config.
	ReasonMissingLabel = "missing-label"
	ReasonUnknown      = "base-unknown"
	// ReasonUndated: Policy.MaxImageAge is set and the image carries no
	// date that is an age (only reproducible-build epochs, or none), so its
	// age cannot be judged.
	ReasonUndated = "image-undated"
)

// Severity orders reasons, worst first.
var Severity = []string{ReasonBanned, ReasonNotAllowed, ReasonOutdated, ReasonTooOld, ReasonImageTooOld,
	ReasonUnsigned, ReasonNoSBOM, ReasonLatestOnly, ReasonMissingLabel, ReasonUnknown, ReasonUndated}

// How a base was found.
const (
	ByAnnotation = "annotation"
	ByLayers     = "layers"
	ByHistory    = "history"
	// ByAnnotationHistory: the annotations name the base, which could not
	// be read (deleted by gc, or on another registry); its age comes from
	// this image's own history.
	ByAnnotationHistory = "annotation+history"
)

// Where an image's date came from (Image.CreatedFrom).
const (
	FromConfig  = "config"
	FromHistory = "history"
)

// Confidence in a detection.
const (
	High   = "high"
	Medium = "medium"
	Low    = "low"
)

// Annotation keys of the OCI image spec naming an image's base.
const (
	AnnotationBaseName   = "org.opencontainers.image.base.name"
	AnnotationBaseDigest = "org.opencontainers.image.base.digest"
)

// Result is the audit of a registry. Its JSON field names are a contract.
type Result struct {
	Registry string  `json:"registry"`
	Images   []Image `json:"images"`
	// NotJudged lists the tags (and platforms) of the selection that are
	// not images: signatures, SBOMs, attestations, Helm charts, other
	// artifacts, and manifests that could not be read.
	NotJudged []NotJudged       `json:"notJudged"`
	Problems  []walk.Problem    `json:"problems"`
	Errors    []inventory.Error `json:"errors"`
	// Warnings: what was asked that may not be what was meant, such as a
	// --ban, --allow or policy file pattern that matches no image or base
	// of the registry.
	Warnings []patterns.Warning `json:"warnings"`

	// Inventory is the walk of the whole registry the audit was made from
	// (whatever the filters), for reports; not part of the JSON.
	Inventory *inventory.Result `json:"-"`
}

// Image is one tag and platform.
type Image struct {
	Repository string `json:"repository"`
	Tag        string `json:"tag"`
	// Digest is the platform manifest's.
	Digest   string `json:"digest"`
	Platform string `json:"platform"`
	// Base is null when the image has none (FROM scratch) or it cannot be
	// found.
	Base *Base `json:"base"`
	// BaseAgeDays is null when the base's age is unknown (reproducible
	// timestamps, or no base).
	BaseAgeDays *int `json:"baseAgeDays"`
	// Created is the date the image's age is counted from (RFC 3339): its
	// config's created time, or, when that is a reproducible-build epoch
	// (1970, 1980, 0001) or in the future, the newest dated entry of its
	// history. Empty when the image has no such date (undated).
	Created string `json:"created,omitempty"`
	// CreatedFrom says which: "config" or "history"; empty when undated.
	CreatedFrom string `json:"createdFrom,omitempty"`
	// ImageAgeDays is null when the image is undated.
	ImageAgeDays *int `json:"imageAgeDays"`
	// MissingLabels are the labels of Policy.RequireLabels absent from the
	// image config; omitted when none are required or none is missing.
	MissingLabels []string `json:"missingLabels,omitempty"`
	// Signed and SBOM say whether a signature and an SBOM are attached to
	// the image (its tag's manifest or its platform manifest); null when
	// the policy does not ask for them (they are then not looked up).
	Signed  *bool    `json:"signed"`
	SBOM    *bool    `json:"sbom"`
	Reasons []string `json:"reasons"`
}

// Base is what an image was built on.
type Base struct {
	// Repository and Tag name the base; empty when only the history tells
	// that there is one.
	Repository string `json:"repository"`
	Tag        string `json:"tag,omitempty"`
	// Registry is the host of a base on another registry (named by
	// annotation, and not found here); empty for this registry's.
	Registry string `json:"registry,omitempty"`
	// Digest is the base's platform manifest.
	Digest     string `json:"digest,omitempty"`
	Created    string `json:"created,omitempty"`
	DetectedBy string `json:"detectedBy"`
	Confidence string `json:"confidence"`
	// Tagged: a tag of the registry still points at this base.
	Tagged bool `json:"tagged"`
	// AlsoMatches names the other images that match equally, when the
	// evidence cannot choose between them.
	AlsoMatches []string `json:"alsoMatches,omitempty"`
	// Note explains a doubtful detection.
	Note string `json:"note,omitempty"`
}

// Name is "repository:tag", "repository@digest" or "(unknown)".
func (b *Base) Name() string {
	switch {
	case b == nil:
		return ""
	case b.Repository == "":
		return "(unknown)"
	case b.Registry != "":
		// On another registry: its tag there was not read.
		n := b.Registry + "/" + b.Repository
		if b.Tag != "" {
			n += ":" + b.Tag
		}
		if b.Digest != "" {
			n += "@" + shortDigest(b.Digest)
		}
		return n
	case b.Tag != "" && b.Tagged:
		return b.Repository + ":" + b.Tag
	case b.Tag != "":
		return b.Repository + ":" + b.Tag + "@" + shortDigest(b.Digest) + " (untagged since)"
	}
	return b.Repository + "@" + shortDigest(b.Digest)
}

// Options for Run.
type Options struct {
	// Inventory says how to reach the registry; its Repo and Tag filters
	// select the images audited, while the lineage index is always built
	// over the whole registry.
	Inventory inventory.Options
	Policy    Policy
	// Now is the reference time for ages; zero means time.Now.
	Now time.Time
}

// Run inventories the registry at host and audits it.
func Run(ctx context.Context, host string, opts Options) (*Result, error) {
	all := opts.Inventory
	all.Repo, all.Tag = nil, nil
	inv, err := inventory.Run(ctx, host, all)
	if err != nil {
		return nil, err
	}
	return RunOn(ctx, host, inv, opts)
}

// RunOn audits an inventory already made of the whole registry at host
// (unfiltered: the lineage index needs every image), reading from the
// registry only the bases that no tag points at any more.
func RunOn(ctx context.Context, host string, inv *inventory.Result, opts Options) (*Result, error) {
	f, err := newFetcher(ctx, host, opts.Inventory)
	if err != nil {
		return nil, err
	}
	return Analyze(ctx, inv, f, opts), nil
}

// Fetcher reads a platform manifest and config by digest, for bases that no
// tag points at any more. It may be nil: such bases are then judged on the
// annotation alone.
type Fetcher interface {
	Platform(ctx context.Context, repo, digest string, want *v1.Platform) (*inventory.Platform, error)
}

// candidate is a platform image of the registry in the lineage index.
type candidate struct {
	repo, tag string
	img       *inventory.Image
	plat      *inventory.Platform
}

func (c candidate) ref() string { return c.repo + ":" + c.tag }

type analyzer struct {
	inv    *inventory.Result
	fetch  Fetcher
	opts   Options
	now    time.Time
	log    *slog.Logger
	chains map[string][]candidate // hash of a complete diff_ids list -> images with it
	tags   map[string]*inventory.Image
	// tagsOf: "repo@digest" -> the tags naming that manifest (or an index
	// holding it).
	tagsOf map[string][]string
	// attached: "repo@digest" -> what the inventory's cosign-style and
	// referrers fallback tags attach to that manifest.
	attached map[string]attachment
	// asked: what the referrers API listed, per "repo@digest".
	asked          map[string]attachment
	noReferrersAPI bool
}

// Analyze audits an inventory. It reads the registry (through f) only for
// bases named by annotation that no tag points at, and, when f is a
// ReferrersFetcher and the policy requires signatures or SBOMs, for the
// referrers API.
func Analyze(ctx context.Context, inv *inventory.Result, f Fetcher, opts Options) *Result {
	a := &analyzer{inv: inv, fetch: f, opts: opts, now: opts.Now, log: opts.Inventory.Logger,
		chains: map[string][]candidate{}, tags: map[string]*inventory.Image{},
		tagsOf: map[string][]string{}, attached: map[string]attachment{}, asked: map[string]attachment{}}
	if a.now.IsZero() {
		a.now = time.Now()
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	unreadable := map[string]bool{}
	for _, p := range inv.Problems {
		unreadable[p.Digest] = true
	}
	for i := range inv.Images {
		img := &inv.Images[i]
		a.tags[img.Repository+":"+img.Tag] = img
		for j := range img.Platforms {
			p := &img.Platforms[j]
			if kindOf(img.Tag, p, unreadable) != "" || len(p.Config.RootFS.DiffIDs) == 0 {
				continue
			}
			k := chainKey(p.Config.RootFS.DiffIDs)
			a.chains[k] = append(a.chains[k], candidate{img.Repository, img.Tag, img, p})
		}
	}
	a.indexTags()
	res := &Result{Registry: inv.Registry, Images: []Image{}, NotJudged: []NotJudged{}, Warnings: []patterns.Warning{}, Problems: []walk.Problem{}, Errors: []inventory.Error{}, Inventory: inv}
	for _, p := range inv.Problems {
		if selected(opts.Inventory, &inventory.Image{Repository: p.Repository, Tag: p.Tag}) {
			res.Problems = append(res.Problems, p)
		}
	}
	for _, e := range inv.Errors {
		if selected(opts.Inventory, &inventory.Image{Repository: e.Repository, Tag: e.Tag}) {
			res.Errors = append(res.Errors, e)
		}
	}
	for i := range inv.Images {
		img := &inv.Images[i]
		if !selected(opts.Inventory, img) {
			continue
		}
		for j := range img.Platforms {
			p := &img.Platforms[j]
			if k := kindOf(img.Tag, p, unreadable); k != "" {
				// Not an image: counted and said, never skipped in silence.
				res.NotJudged = append(res.NotJudged, NotJudged{Repository: img.Repository, Tag: img.Tag, Digest: p.Digest, Platform: p.Platform, Kind: k})
				continue
			}
			res.Images = append(res.Images, a.judge(ctx, img, p))
		}
	}
	res.Warnings = a.unmatched(res.Images)
	return res
}

// unmatched warns about each ban and allow pattern that matches no image of
// the registry (whatever the filters) and no base found: a typo must not
// turn a rule off without a word.
func (a *analyzer) unmatched(judged []Image) []patterns.Warning {
	// What a pattern can name: every image of the registry, by its tag
	// and its digests, and every base found (some are untagged, or on
	// another registry).
	var items []*Base
	for _, img := range a.inv.Images {
		items = append(items, &Base{Repository: img.Repository, Tag: img.Tag, Digest: img.Digest})
		for _, p := range img.Platforms {
			if p.Digest != img.Digest {
				items = append(items, &Base{Repository: img.Repository, Tag: img.Tag, Digest: p.Digest})
			}
		}
	}
	for _, img := range judged {
		if img.Base != nil && img.Base.Repository != "" {
			items = append(items, img.Base)
		}
	}
	what := fmt.Sprintf("the %s of the registry and their bases", plural(len(a.inv.Images), "tag", "tags"))
	warnings := []patterns.Warning{}
	for _, list := range [][]Pattern{a.opts.Policy.Ban, a.opts.Policy.Allow} {
		for _, p := range patterns.Unmatched(list, items, func(p Pattern, b *Base) bool {
			return p.Match(a.hostFor(b, p), b.Repository, b.Tag, b.Digest)
		}) {
			source := p.Source
			if source == "" {
				source = "pattern"
			}
			warnings = append(warnings, patterns.UnmatchedWarning(source, p.Text, what))
		}
	}
	return warnings
}

// selected reports whether the filters select an image (or an error of the
// walk: one without a tag is selected by its repository alone).
func selected(o inventory.Options, img *inventory.Image) bool {
	return (o.Repo == nil || o.Repo.MatchString(img.Repository)) && (o.Tag == nil || img.Tag == "" || o.Tag.MatchString(img.Tag))
}

// chainKey identifies a complete list of diff_ids.
func chainKey(ids []v1.Hash) string {
	h := sha256.New()
	for _, id := range ids {
		h.Write([]byte(id.String()))
		h.Write([]byte{'\n'})
	}
	return string(h.Sum(nil))
}

func (a *analyzer) judge(ctx context.Context, img *inventory.Image, p *inventory.Platform) Image {
	out := Image{Repository: img.Repository, Tag: img.Tag, Digest: p.Digest, Platform: p.Platform, Reasons: []string{}}
	base, created := a.detect(ctx, img, p)
	out.Base = base
	if base != nil {
		if !created.IsZero() {
			base.Created = created.UTC().Format(time.RFC3339)
			out.BaseAgeDays = a.days(created)
		}
		out.Reasons = a.reasons(img, p, base, out.BaseAgeDays)
	}
	out.Reasons = append(out.Reasons, a.imageRules(ctx, img, p, &out)...)
	slices.SortStableFunc(out.Reasons, func(x, y string) int {
		return cmp.Compare(slices.Index(Severity, x), slices.Index(Severity, y))
	})
	return out
}

// days is the age of t in whole days.
func (a *analyzer) days(t time.Time) *int {
	d := int(a.now.Sub(t).Hours() / 24)
	return &d
}

// detect finds the base of one platform image and the time its age is
// counted from (zero when unknown).
func (a *analyzer) detect(ctx context.Context, img *inventory.Image, p *inventory.Platform) (*Base, time.Time) {
	if b, bp, ok := a.byAnnotation(ctx, img, p); ok {
		if bp == nil {
			// Named but unreadable (collected since, or on another
			// registry): the image's history still dates its base layers.
			return b, a.datedByHistory(b, p)
		}
		return b, baseTime(bp, a.now)
	}
	if b, bp := a.byLayers(p); b != nil {
		return b, baseTime(bp, a.now)
	}
	if b, created := byHistory(p.Config, a.now); b != nil {
		return b, created
	}
	return nil, time.Time{}
}

// byAnnotation reads the base.name/base.digest annotations of the platform
// manifest (or of the index holding it) and checks them against the layers.
func (a *analyzer) byAnnotation(ctx context.Context, img *inventory.Image, p *inventory.Platform) (*Base, *inventory.Platform, bool) {
	ann := p.Manifest.Annotations
	if ann[AnnotationBaseName] == "" && ann[AnnotationBaseDigest] == "" {
		ann = img.Annotations
	}
	baseName, baseDigest := ann[AnnotationBaseName], ann[AnnotationBaseDigest]
	if baseName == "" && baseDigest == "" {
		return nil, nil, false
	}
	b := &Base{DetectedBy: ByAnnotation, Digest: baseDigest}
	repo, tag, host := a.splitName(baseName)
	b.Repository, b.Tag = repo, tag

	var bp *inventory.Platform
	switch {
	case host != "":
		// Named by another host: this registry's all the same when its
		// repository here holds the named digest (the registry reached
		// by another name: localhost and 127.0.0.1).
		if baseDigest != "" && repo != "" {
			bp = a.platformIn(ctx, repo, baseDigest, p)
		}
		if bp == nil {
			// A base on another registry: named, not verifiable here,
			// and its tag there was not read.
			b.Registry = host
			b.Confidence = Medium
			b.Note = "base is on another registry (" + host + "); its layers were not checked (--registry-alias names this registry's other names)"
			return b, nil, true
		}
	case baseDigest != "":
		bp = a.platformByDigest(ctx, repo, baseDigest, p)
	case tag != "":
		if cur := a.tags[repo+":"+tag]; cur != nil {
			bp = pickPlatform(cur, p.Platform)
		}
	}
	if bp == nil || bp.Config == nil {
		b.Confidence = Medium
		b.Note = "the named base could not be read from the registry; its layers were not checked"
		return b, nil, true
	}
	b.Digest = bp.Digest
	b.Tagged = a.isTagged(bp.Digest)
	if isPrefix(bp.Config.RootFS.DiffIDs, p.Config.RootFS.DiffIDs) {
		b.Confidence = High
		return b, bp, true
	}
	// The annotation and the layers disagree: believe the layers if they
	// name something, and say so.
	if lb, lbp := a.byLayers(p); lb != nil {
		lb.Confidence = Medium
		lb.Note = fmt.Sprintf("annotation names %s, whose layers are not this image's base layers", b.Name())
		return lb, lbp, true
	}
	b.Confidence = Low
	b.Note = "the annotated base's layers are not this image's base layers"
	return b, bp, true
}

// splitName parses an annotation's base name. host is empty when the name
// is on this registry: no registry host, the host audited, or one of
// Policy.RegistryAliases.
func (a *analyzer) splitName(s string) (repo, tag, host string) {
	if s == "" {
		return "", "", ""
	}
	s, _, _ = strings.Cut(s, "@")
	if i := strings.Index(s, "/"); i > 0 && (strings.ContainsAny(s[:i], ".:") || s[:i] == "localhost") {
		host, s = s[:i], s[i+1:]
	}
	if i := strings.LastIndex(s, ":"); i > 0 {
		s, tag = s[:i], s[i+1:]
	}
	if a.isThisRegistry(host) {
		host = ""
	}
	return s, tag, host
}

// isThisRegistry reports whether host names the registry audited: empty,
// the host audited, or one of Policy.RegistryAliases.
func (a *analyzer) isThisRegistry(host string) bool {
	return host == "" || strings.EqualFold(host, a.inv.Registry) || slices.ContainsFunc(a.opts.Policy.RegistryAliases, func(h string) bool {
		return strings.EqualFold(h, host)
	})
}

// platformIn finds the platform manifest digest names in repository repo
// of this registry, tagged (in the inventory) or not (read by digest); nil
// when repo does not hold it.
func (a *analyzer) platformIn(ctx context.Context, repo, digest string, img *inventory.Platform) *inventory.Platform {
	for i := range a.inv.Images {
		if cand := &a.inv.Images[i]; cand.Repository == repo && cand.Digest == digest {
			return pickPlatform(cand, img.Platform)
		}
	}
	for i := range a.inv.Images {
		cand := &a.inv.Images[i]
		if cand.Repository != repo {
			continue
		}
		for j := range cand.Platforms {
			if cand.Platforms[j].Digest == digest && cand.Platforms[j].Config != nil {
				return &cand.Platforms[j]
			}
		}
	}
	return a.fetchPlatform(ctx, repo, digest, img)
}

// platformByDigest finds the platform manifest a base digest names: in the
// inventory when tagged, else read from the registry. A digest of an index
// resolves to its child for the image's platform.
func (a *analyzer) platformByDigest(ctx context.Context, repo, digest string, img *inventory.Platform) *inventory.Platform {
	for i := range a.inv.Images {
		cand := &a.inv.Images[i]
		if cand.Digest == digest {
			return pickPlatform(cand, img.Platform)
		}
		for j := range cand.Platforms {
			if cand.Platforms[j].Digest == digest && cand.Platforms[j].Config != nil {
				return &cand.Platforms[j]
			}
		}
	}
	return a.fetchPlatform(ctx, repo, digest, img)
}

// fetchPlatform reads the platform manifest digest names in repo from the
// registry (a base no tag points at); nil when it cannot.
func (a *analyzer) fetchPlatform(ctx context.Context, repo, digest string, img *inventory.Platform) *inventory.Platform {
	if a.fetch == nil || repo == "" {
		return nil
	}
	var want *v1.Platform
	if img.Platform != "" {
		want, _ = v1.ParsePlatform(img.Platform)
	}
	bp, err := a.fetch.Platform(ctx, repo, digest, want)
	if err != nil {
		a.log.Info("reading annotated base", "repository", repo, "digest", digest, "error", err)
		return nil
	}
	return bp
}

func pickPlatform(img *inventory.Image, platform string) *inventory.Platform {
	for i := range img.Platforms {
		if p := &img.Platforms[i]; p.Config != nil && (len(img.Platforms) == 1 || p.Platform == platform) {
			return p
		}
	}
	return nil
}

func (a *analyzer) isTagged(platformDigest string) bool {
	for _, c := range a.inv.Images {
		if c.Digest == platformDigest {
			return true
		}
		for _, p := range c.Platforms {
			if p.Digest == platformDigest {
				return true
			}
		}
	}
	return false
}

// byLayers finds the longest proper prefix of the image's diff_ids that is
// the complete layer list of another image of the registry.
func (a *analyzer) byLayers(p *inventory.Platform) (*Base, *inventory.Platform) {
	ids := p.Config.RootFS.DiffIDs
	for k := len(ids) - 1; k >= 1; k-- {
		var cands []candidate
		for _, c := range a.chains[chainKey(ids[:k])] {
			if c.plat.Digest != p.Digest {
				cands = append(cands, c)
			}
		}
		if len(cands) == 0 {
			continue
		}
		slices.SortFunc(cands, func(x, y candidate) int {
			// Prefer the image whose tag names the platform manifest itself
			// or its index, then by name.
			return cmp.Compare(x.ref(), y.ref())
		})
		best := cands[0]
		b := &Base{Repository: best.repo, Tag: best.tag, Digest: best.plat.Digest, DetectedBy: ByLayers, Confidence: High, Tagged: true}
		distinct := map[string]bool{best.plat.Digest: true}
		for _, c := range cands[1:] {
			b.AlsoMatches = append(b.AlsoMatches, c.ref())
			distinct[c.plat.Digest] = true
		}
		if len(distinct) > 1 {
			b.Confidence = Medium
			b.Note = "several different images have exactly these layers"
		}
		return b, best.plat
	}
	return nil, nil
}

// byHistory finds a base in the image's own history: the layers created
// before the image's last build session, when the history shows one. It
// names no image; the base's time is the newest of its layers'.
func byHistory(cf *v1.ConfigFile, now time.Time) (*Base, time.Time) {
	times, split := historySplit(cf, now)
	if split < 1 {
		return nil, time.Time{}
	}
	return &Base{DetectedBy: ByHistory, Confidence: Low,
		Note: predate(split, len(times)) + "; no image of the registry has exactly those layers"}, newestValid(times[:split], now)
}

// predate says how many of an image's layers predate its build: "the
// first of 2 layers predates", "the first 2 of 3 layers predate".
func predate(split, total int) string {
	if split == 1 {
		return fmt.Sprintf("the first of %d layers predates the image's build", total)
	}
	return fmt.Sprintf("the first %d of %d layers predate the image's build", split, total)
}

// layerTimes returns the history time of each layer (empty-layer entries
// skipped), or nil when the history does not describe every layer.
func layerTimes(cf *v1.ConfigFile) []time.Time {
	var times []time.Time
	for _, h := range cf.History {
		if !h.EmptyLayer {
			times = append(times, h.Created.Time)
		}
	}
	if len(times) != len(cf.RootFS.DiffIDs) {
		return nil
	}
	return times
}

// historySplit returns the layers' history times and the number of leading
// layers that predate the image's last build session: the trailing layers
// whose times are within an hour of the last valid one are that session,
// and the base is what comes before. split is 0 when the history shows no
// such boundary.
func historySplit(cf *v1.ConfigFile, now time.Time) (times []time.Time, split int) {
	times = layerTimes(cf)
	if len(times) < 2 {
		return times, 0
	}
	last := -1
	for i := len(times) - 1; i >= 0; i-- {
		if validTime(times[i], now) {
			last = i
			break
		}
	}
	if last < 1 {
		return times, 0
	}
	for i := last - 1; i >= 0; i-- {
		if validTime(times[i], now) && times[last].Sub(times[i]) > time.Hour {
			return times, i + 1
		}
	}
	return times, 0
}

// historyBaseTime dates the base of an image whose base is named (by
// annotation) but cannot be read, from the image's own history: the newest
// time of the layers before the image's last build session; when the
// history shows no session boundary, the newest time of every layer but the
// last (a base is a proper prefix, so its newest layer is no newer: the age
// is then a lower bound). It returns how many layers it dated and whether
// the bound is exact; zero when the history has no usable time.
func historyBaseTime(cf *v1.ConfigFile, now time.Time) (t time.Time, layers int, bounded bool) {
	times, split := historySplit(cf, now)
	if split >= 1 {
		return newestValid(times[:split], now), split, false
	}
	if len(times) < 2 {
		return time.Time{}, 0, false
	}
	return newestValid(times[:len(times)-1], now), len(times) - 1, true
}

// datedByHistory gives a base that is named but cannot be read the age that
// the image's own history shows for its base layers, and says so.
func (a *analyzer) datedByHistory(b *Base, p *inventory.Platform) time.Time {
	t, n, bounded := historyBaseTime(p.Config, a.now)
	if t.IsZero() {
		return t
	}
	b.DetectedBy = ByAnnotationHistory
	if b.Confidence == High {
		b.Confidence = Medium
	}
	layers := "first layer"
	if n > 1 {
		layers = fmt.Sprintf("first %d layers", n)
	}
	how := "its age is that of this image's " + layers + ", from this image's history"
	if bounded {
		how = "its age is at least that of this image's " + layers + ", from this image's history (no build boundary seen)"
	}
	if b.Note != "" {
		b.Note += "; "
	}
	b.Note += how
	return t
}

func newestValid(times []time.Time, now time.Time) time.Time {
	var newest time.Time
	for _, t := range times {
		if validTime(t, now) && t.After(newest) {
			newest = t
		}
	}
	return newest
}

// ValidTime reports whether t can be an age or a date: not the zero time,
// not a reproducible-build epoch (1970, 1980, or anything that early), not
// in the future. retain reads push times from image configs with it.
func ValidTime(t, now time.Time) bool { return validTime(t, now) }

// validTime reports whether t can be an age: not the zero time, not a
// reproducible-build epoch (1970-01-01, 1980-01-01, or anything that early),
// not in the future.
func validTime(t time.Time, now time.Time) bool {
	return t.After(time.Date(1980, 1, 2, 0, 0, 0, 0, time.UTC)) && !t.After(now.Add(time.Hour))
}

// baseTime is the base's age reference: its config's created time if it is
// an age, else the newest valid time in its history; zero when neither.
func baseTime(bp *inventory.Platform, now time.Time) time.Time {
	if bp == nil || bp.Config == nil {
		return time.Time{}
	}
	if c := bp.Config.Created.Time; validTime(c, now) {
		return c
	}
	return historyNewest(bp.Config, now)
}

// historyNewest is the newest valid time of any history entry.
func historyNewest(cf *v1.ConfigFile, now time.Time) time.Time {
	var newest time.Time
	for _, h := range cf.History {
		if t := h.Created.Time; validTime(t, now) && t.After(newest) {
			newest = t
		}
	}
	return newest
}

func (a *analyzer) reasons(img *inventory.Image, p *inventory.Platform, b *Base, ageDays *int) []string {
	pol := a.opts.Policy
	reasons := []string{}
	names := []struct{ repo, tag string }{{b.Repository, b.Tag}}
	for _, m := range b.AlsoMatches {
		r, t, _ := strings.Cut(m, ":")
		names = append(names, struct{ repo, tag string }{r, t})
	}
	matches := func(pats []Pattern) bool {
		for _, pat := range pats {
			for _, n := range names {
				if pat.Match(a.hostFor(b, pat), n.repo, n.tag, b.Digest) {
					return true
				}
			}
		}
		return false
	}
	if matches(pol.Ban) {
		reasons = append(reasons, ReasonBanned)
	}
	if len(pol.Allow) > 0 && !matches(pol.Allow) {
		reasons = append(reasons, ReasonNotAllowed)
	}
	// base-outdated needs evidence: the base's tag, on this registry, was
	// read and names another image, or its repository was listed without
	// it. The tag of a base on another registry is not read.
	if b.Registry == "" && b.Repository != "" && b.Tag != "" && b.Digest != "" && b.DetectedBy != "" {
		if cur := a.tags[b.Repository+":"+b.Tag]; cur != nil {
			if cp := pickPlatform(cur, p.Platform); cp == nil || cp.Digest != b.Digest {
				reasons = append(reasons, ReasonOutdated)
			}
		} else if a.tagGone(b.Repository, b.Tag) {
			reasons = append(reasons, ReasonOutdated)
		}
	}
	if pol.MaxBaseAge > 0 && ageDays != nil && time.Duration(*ageDays)*24*time.Hour > pol.MaxBaseAge {
		reasons = append(reasons, ReasonTooOld)
	}
	if b.Repository == "" {
		reasons = append(reasons, ReasonUnknown)
	}
	return reasons
}

// hostFor is the registry host a pattern is matched against for base b:
// the base's own registry when it is on another, else this registry's
// name, or the alias the pattern names.
func (a *analyzer) hostFor(b *Base, pat Pattern) string {
	if b.Registry != "" {
		return b.Registry
	}
	if pat.host != "" && a.isThisRegistry(pat.host) {
		return pat.host
	}
	return a.inv.Registry
}

// tagGone reports whether the listing of repo shows that tag is not there
// any more (not merely unread: a tag listed that could not be read is no
// evidence).
func (a *analyzer) tagGone(repo, tag string) bool {
	if a.inv.Listed == nil {
		return a.repoKnown(repo)
	}
	tags, listed := a.inv.Listed[repo]
	return listed && !slices.Contains(tags, tag)
}

func (a *analyzer) repoKnown(repo string) bool {
	for _, img := range a.inv.Images {
		if img.Repository == repo {
			return true
		}
	}
	return false
}

// isPrefix reports whether base is a proper prefix of ids.
func isPrefix(base, ids []v1.Hash) bool {
	return len(base) > 0 && len(base) < len(ids) && slices.Equal(base, ids[:len(base)])
}

func shortDigest(d string) string {
	if i := strings.Index(d, ":"); i >= 0 && len(d) > i+13 {
		return d[:i+13]
	}
	return d
}
