package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// ErrReferrersStatus: the referrers API answered with a status that says
// neither "here is the list" nor "no such API".
var ErrReferrersStatus = errors.New("unexpected answer from the referrers API")

// maxReferrersIndex bounds what is read of a referrers list (the
// distribution spec lets registries refuse manifests over 4 MiB).
const maxReferrersIndex = 4 << 20

// HTTPClient is an HTTP client authorised for scope ("pull", "push,pull")
// on repo, with the options' credentials, TLS and user agent: for the few
// requests go-containerregistry's remote package does not make itself.
func (o Options) HTTPClient(ctx context.Context, repo name.Repository, scope string) (*http.Client, error) {
	kc := o.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	auth, err := authn.Resolve(ctx, kc, repo)
	if err != nil {
		return nil, fmt.Errorf("resolving credentials for %s: %w", repo, err)
	}
	rt := transport.NewUserAgent(o.RoundTripper(), UserAgent())
	t, err := transport.NewWithContext(ctx, repo.Registry, auth, rt, []string{repo.Scope(scope)})
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: t}, nil
}

// Referrers asks the referrers API of the OCI distribution spec (v1.1,
// GET /v2/<name>/referrers/<digest>) alone: unlike remote.Referrers it
// never falls back to the sha256-<hex> tag, and it says whether the
// registry has the API. A 200 with an image index is the list; a 404, 400
// or 406, or a 200 with anything else, means no API (supported false, no
// error), as go-containerregistry reads it; any other status is an error
// wrapping ErrReferrersStatus.
func Referrers(ctx context.Context, hc *http.Client, repo name.Repository, digest string) (descs []v1.Descriptor, supported bool, err error) {
	u := fmt.Sprintf("%s://%s/v2/%s/referrers/%s", repo.Scheme(), repo.RegistryStr(), repo.RepositoryStr(), digest)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, false, err
	}
	req.Header.Set("Accept", string(types.OCIImageIndex))
	resp, err := hc.Do(req)
	if err != nil {
		return nil, false, fmt.Errorf("listing referrers of %s in %s: %w", digest, repo.RepositoryStr(), err)
	}
	defer resp.Body.Close()
	body := io.LimitReader(resp.Body, maxReferrersIndex)
	ct, _, _ := strings.Cut(resp.Header.Get("Content-Type"), ";")
	switch {
	case resp.StatusCode == http.StatusOK && strings.TrimSpace(ct) == string(types.OCIImageIndex):
	case resp.StatusCode == http.StatusOK, resp.StatusCode == http.StatusNotFound,
		resp.StatusCode == http.StatusBadRequest, resp.StatusCode == http.StatusNotAcceptable:
		_, _ = io.Copy(io.Discard, body)
		return nil, false, nil
	default:
		_, _ = io.Copy(io.Discard, body)
		return nil, false, fmt.Errorf("listing referrers of %s in %s: %w: %s", digest, repo.RepositoryStr(), ErrReferrersStatus, resp.Status)
	}
	var idx v1.IndexManifest
	if err := json.NewDecoder(body).Decode(&idx); err != nil {
		return nil, false, fmt.Errorf("listing referrers of %s in %s: %w", digest, repo.RepositoryStr(), err)
	}
	return idx.Manifests, true, nil
}
