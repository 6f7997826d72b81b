package estate

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// layerTime is the mtime of every file in generated layers.
var layerTime = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// Layer returns a deterministic gzip layer holding one file of size
// pseudo-random (incompressible) bytes derived from seed, so that compressed
// sizes are close to size and every seed gives a distinct digest.
func Layer(seed string, size int, mt types.MediaType) (v1.Layer, error) {
	sum := sha256.Sum256([]byte(seed))
	rng := rand.NewChaCha8(sum)
	content := make([]byte, size)
	_, _ = rng.Read(content)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	name := "data/" + strings.NewReplacer("/", "_", ":", "_", " ", "_").Replace(seed)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(size), ModTime: layerTime, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(content); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	raw := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(raw)), nil
	}, tarball.WithMediaType(mt), tarball.WithCompressedCaching)
}

// ImageSpec describes one generated image.
type ImageSpec struct {
	// Base to build on; nil builds FROM scratch.
	Base v1.Image
	// Docker builds a Docker schema 2 image; otherwise OCI.
	Docker bool
	// Platform of a FROM-scratch image (a based image inherits its base's).
	Platform v1.Platform
	// Created is the config's created time, and the history time of the new
	// layers unless LayerCreated is set.
	Created      time.Time
	LayerCreated time.Time
	// Layers are seeds of the new layers and their sizes.
	Layers []LayerSpec
	Labels map[string]string
	// Annotations on the manifest (OCI only).
	Annotations map[string]string
}

// LayerSpec is one generated layer.
type LayerSpec struct {
	Seed string
	Size int
}

// BuildImage makes an image from a spec.
func BuildImage(s ImageSpec) (v1.Image, error) {
	img := s.Base
	lmt := types.OCILayer
	if s.Docker {
		lmt = types.DockerLayer
	}
	if img == nil {
		img = empty.Image
		if !s.Docker {
			img = mutate.MediaType(img, types.OCIManifestSchema1)
			img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, err
		}
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture, cf.Variant = s.Platform.OS, s.Platform.Architecture, s.Platform.Variant
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			return nil, err
		}
	}
	lc := s.LayerCreated
	if lc.IsZero() {
		lc = s.Created
	}
	var adds []mutate.Addendum
	for _, ls := range s.Layers {
		l, err := Layer(ls.Seed, ls.Size, lmt)
		if err != nil {
			return nil, err
		}
		adds = append(adds, mutate.Addendum{Layer: l, History: v1.History{
			Created:   v1.Time{Time: lc},
			CreatedBy: fmt.Sprintf("COPY %s /data/ # buildkit", ls.Seed),
		}})
	}
	img, err := mutate.Append(img, adds...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg := cf.Config
	if s.Labels != nil {
		labels := map[string]string{}
		for k, v := range cfg.Labels {
			labels[k] = v
		}
		for k, v := range s.Labels {
			labels[k] = v
		}
		cfg.Labels = labels
	}
	if img, err = mutate.Config(img, cfg); err != nil {
		return nil, err
	}
	if img, err = mutate.CreatedAt(img, v1.Time{Time: s.Created}); err != nil {
		return nil, err
	}
	if len(s.Annotations) > 0 && !s.Docker {
		img = mutate.Annotations(img, s.Annotations).(v1.Image)
	}
	return img, nil
}

// Index makes an OCI index of images, each with its config's platform.
func Index(imgs ...v1.Image) (v1.ImageIndex, error) {
	var adds []mutate.IndexAddendum
	for _, img := range imgs {
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, err
		}
		mt, err := img.MediaType()
		if err != nil {
			return nil, err
		}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{
			MediaType: mt,
			Platform:  &v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant},
		}})
	}
	return mutate.AppendManifests(empty.Index, adds...), nil
}
