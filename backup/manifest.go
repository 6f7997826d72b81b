package backup

import (
	"encoding/json"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// refs is what a manifest of any kind points at: the children of an index,
// or the config and layers of an image or artifact manifest. The subject of
// a referrer is not followed: it is backed up under its own name.
type refs struct {
	Children []v1.Descriptor
	Blobs    []v1.Descriptor
}

// parseRefs reads the references of a manifest. Unknown media types are
// read by shape (manifests, config, layers), as registries store them.
func parseRefs(mt types.MediaType, raw []byte) (refs, error) {
	var m struct {
		MediaType types.MediaType `json:"mediaType"`
		Manifests []v1.Descriptor `json:"manifests"`
		Config    *v1.Descriptor  `json:"config"`
		Layers    []v1.Descriptor `json:"layers"`
		Blobs     []v1.Descriptor `json:"blobs"` // OCI artifact manifest (withdrawn draft)
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return refs{}, fmt.Errorf("parsing manifest (%s): %w", mt, err)
	}
	if mt == "" {
		mt = m.MediaType
	}
	var r refs
	if mt.IsIndex() || (m.Config == nil && len(m.Manifests) > 0) {
		r.Children = m.Manifests
		return r, nil
	}
	if mt == types.DockerManifestSchema1 || mt == types.DockerManifestSchema1Signed {
		return r, fmt.Errorf("docker schema 1 manifests are not supported")
	}
	if m.Config != nil {
		r.Blobs = append(r.Blobs, *m.Config)
	}
	r.Blobs = append(r.Blobs, m.Layers...)
	r.Blobs = append(r.Blobs, m.Blobs...)
	return r, nil
}

// distributable reports whether a registry serves the blob (foreign and
// restricted layers are fetched from elsewhere, and are not backed up).
func distributable(d v1.Descriptor) bool {
	return d.MediaType.IsDistributable()
}
