package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/regkeeper/regkeeper/internal/client"
)

// maxReferrersList bounds what is read of a registry's fallback tag (the
// distribution spec lets registries refuse manifests over 4 MiB).
const maxReferrersList = 4 << 20

// pushReferrersLists makes the referrers restored into repo findable. A
// registry with the referrers API lists them itself, and the layout's
// fallback tags are ordinary tags there, pushed as they are. On a registry
// without it, each subject's referrers tag (sha256-<hex>) is maintained as
// the OCI distribution spec (v1.1, "Pushing Manifests with Subject") tells
// a client to: the current list is read (none: an empty index), the
// descriptors it lacks are appended (never a duplicate), and it is pushed
// back under the same tag. Where the registry has no such tag and the
// layout's own fallback tag already lists everything, that one is pushed
// unchanged, keeping its digest.
func (rs *restorer) pushReferrersLists(ctx context.Context, hc *http.Client, repo name.Repository, p *repoPlan) error {
	if len(p.listed) == 0 && len(p.fallback) == 0 {
		return nil
	}
	subjects := make([]v1.Hash, 0, len(p.listed)+len(p.fallback))
	for s := range p.listed {
		subjects = append(subjects, s)
	}
	for s := range p.fallback {
		if _, ok := p.listed[s]; !ok {
			subjects = append(subjects, s)
		}
	}
	sort.Slice(subjects, func(i, j int) bool { return subjects[i].String() < subjects[j].String() })

	api, err := probeReferrersAPI(ctx, hc, repo)
	if err != nil {
		return fmt.Errorf("probing the referrers API: %w", err)
	}
	for _, s := range subjects {
		backed, hasBacked := p.fallback[s]
		var err error
		switch {
		case api && hasBacked:
			err = rs.pushManifest(ctx, hc, repo, backed.tag, backed)
		case api:
			continue
		default:
			var b *planManifest
			if hasBacked {
				b = &backed
			}
			err = rs.updateReferrersTag(ctx, hc, repo, s, b, p.listed[s])
		}
		if err != nil {
			rs.addError(Error{Repository: repo.RepositoryStr(), Tag: referrersTag(s), Error: client.Describe(err)})
		}
	}
	return nil
}

// updateReferrersTag merges backed (the layout's fallback tag of subject,
// may be nil) and listed into the registry's fallback tag of subject.
func (rs *restorer) updateReferrersTag(ctx context.Context, hc *http.Client, repo name.Repository, subject v1.Hash, backed *planManifest, listed []v1.Descriptor) error {
	tag := referrersTag(subject)
	cur, mt, found, err := getManifest(ctx, hc, repo, tag)
	if err != nil {
		return fmt.Errorf("reading referrers tag %s: %w", tag, err)
	}
	add := listed
	var base []byte
	switch {
	case found:
		if mt != types.OCIImageIndex {
			return fmt.Errorf("tag %s holds a %s, not a referrers list (an OCI image index): left as it is", tag, mt)
		}
		base = cur
		if backed != nil {
			var im v1.IndexManifest
			if err := json.Unmarshal(backed.raw, &im); err != nil {
				return fmt.Errorf("parsing the layout's referrers tag %s: %w", tag, err)
			}
			add = append(append([]v1.Descriptor(nil), im.Manifests...), listed...)
		}
	case backed != nil:
		base = backed.raw
	}
	merged, changed, err := mergeReferrersList(base, add)
	if err != nil {
		return fmt.Errorf("referrers tag %s: %w", tag, err)
	}
	if !changed {
		if found || backed == nil {
			return nil
		}
		merged = backed.raw
	}
	d, _, err := v1.SHA256(strings.NewReader(string(merged)))
	if err != nil {
		return err
	}
	if err := putManifest(ctx, hc, repo, tag, types.OCIImageIndex, merged, d); err != nil {
		return err
	}
	rs.mu.Lock()
	rs.res.ReferrersTagsWritten++
	rs.mu.Unlock()
	return nil
}

// mergeReferrersList appends to the referrers list base (an OCI image index;
// nil: an empty one) the descriptors of add whose digest it lacks. Every
// other field of base is kept as it is.
func mergeReferrersList(base []byte, add []v1.Descriptor) ([]byte, bool, error) {
	doc := map[string]json.RawMessage{}
	var manifests []json.RawMessage
	if base == nil {
		doc["schemaVersion"] = json.RawMessage(`2`)
		doc["mediaType"] = json.RawMessage(`"` + types.OCIImageIndex + `"`)
	} else {
		if err := json.Unmarshal(base, &doc); err != nil {
			return nil, false, fmt.Errorf("parsing referrers list: %w", err)
		}
		if raw, ok := doc["manifests"]; ok && string(raw) != "null" {
			if err := json.Unmarshal(raw, &manifests); err != nil {
				return nil, false, fmt.Errorf("parsing referrers list: %w", err)
			}
		}
	}
	have := map[v1.Hash]bool{}
	for _, m := range manifests {
		var d struct {
			Digest v1.Hash `json:"digest"`
		}
		if err := json.Unmarshal(m, &d); err != nil {
			return nil, false, fmt.Errorf("parsing referrers list entry: %w", err)
		}
		have[d.Digest] = true
	}
	changed := base == nil
	for _, d := range add {
		if have[d.Digest] {
			continue
		}
		have[d.Digest] = true
		b, err := json.Marshal(d)
		if err != nil {
			return nil, false, err
		}
		manifests = append(manifests, b)
		changed = true
	}
	if !changed {
		return base, false, nil
	}
	if manifests == nil {
		manifests = []json.RawMessage{}
	}
	mb, err := json.Marshal(manifests)
	if err != nil {
		return nil, false, err
	}
	doc["manifests"] = mb
	out, err := json.Marshal(doc)
	return out, true, err
}

// probeReferrersAPI asks the registry for the referrers of a digest nothing
// has: a registry with the API answers 200 with an image index (an empty
// one); any other answer means it has none. Asked per repository, after
// pushing into it: some registries answer 404 for a repository they do not
// have yet.
func probeReferrersAPI(ctx context.Context, hc *http.Client, repo name.Repository) (bool, error) {
	_, api, err := client.Referrers(ctx, hc, repo, "sha256:"+strings.Repeat("0", 64))
	if errors.Is(err, client.ErrReferrersStatus) {
		return false, nil
	}
	return api, err
}

// getManifest fetches the manifest under ref; found is false on a 404.
func getManifest(ctx context.Context, hc *http.Client, repo name.Repository, ref string) (raw []byte, mt types.MediaType, found bool, err error) {
	u := fmt.Sprintf("%s://%s/v2/%s/manifests/%s", repo.Scheme(), repo.RegistryStr(), repo.RepositoryStr(), ref)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, "", false, err
	}
	req.Header.Set("Accept", acceptAll)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, "", false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, "", false, nil
	}
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		return nil, "", false, err
	}
	raw, err = io.ReadAll(io.LimitReader(resp.Body, maxReferrersList+1))
	if err != nil {
		return nil, "", false, err
	}
	if len(raw) > maxReferrersList {
		return nil, "", false, fmt.Errorf("manifest %s is larger than %d bytes", ref, maxReferrersList)
	}
	ct, _, _ := strings.Cut(resp.Header.Get("Content-Type"), ";")
	return raw, types.MediaType(strings.TrimSpace(ct)), true, nil
}
