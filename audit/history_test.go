package audit

import (
	"context"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/regkeeper/regkeeper/inventory"
)

// platformWith is an image whose layers were made at the given times.
func platformWith(ann map[string]string, times ...time.Time) *inventory.Platform {
	cf := &v1.ConfigFile{OS: "linux", Architecture: "amd64", Created: v1.Time{Time: times[len(times)-1]}}
	m := &v1.Manifest{SchemaVersion: 2, MediaType: "application/vnd.oci.image.manifest.v1+json", Annotations: ann}
	for i, t := range times {
		h := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat(string(rune('a'+i)), 64)}
		cf.RootFS.DiffIDs = append(cf.RootFS.DiffIDs, h)
		cf.History = append(cf.History, v1.History{Created: v1.Time{Time: t}})
		// An empty-layer entry (ENV, CMD) between layers is not a layer.
		cf.History = append(cf.History, v1.History{Created: v1.Time{Time: t}, EmptyLayer: true})
		m.Layers = append(m.Layers, v1.Descriptor{MediaType: "application/vnd.oci.image.layer.v1.tar+gzip", Digest: h})
	}
	return &inventory.Platform{Platform: "linux/amd64", Digest: "sha256:" + strings.Repeat("f", 64), Manifest: m, Config: cf}
}

// TestHistoryDatesAnUnreadableBase: a base named by annotation that cannot
// be read (on another registry here, or collected) is dated by the image's
// history: exactly when the history shows the image's build session, as a
// lower bound when it does not.
func TestHistoryDatesAnUnreadableBase(t *testing.T) {
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	ago := func(d int) time.Time { return now.Add(-time.Duration(d) * 24 * time.Hour) }
	epoch := time.Unix(0, 0).UTC()
	remote := map[string]string{AnnotationBaseName: "docker.io/library/debian:12"}
	for _, tc := range []struct {
		name    string
		times   []time.Time
		by      string
		age     int // -1: none
		reasons string
		note    string
	}{
		{"two sessions", []time.Time{ago(400), ago(400), ago(3)}, ByAnnotationHistory, 400, "base-too-old", "first 2 layers"},
		{"one session: a lower bound", []time.Time{ago(3).Add(-time.Minute), ago(3)}, ByAnnotationHistory, 3, "", "at least"},
		{"reproducible base layers", []time.Time{epoch, ago(3)}, ByAnnotation, -1, "", "another registry"},
		{"one layer", []time.Time{ago(3)}, ByAnnotation, -1, "", "another registry"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inv := &inventory.Result{Registry: "r.example.com", Images: []inventory.Image{{
				Repository: "team/app", Tag: "1.0", Digest: "sha256:" + strings.Repeat("f", 64),
				Platforms: []inventory.Platform{*platformWith(remote, tc.times...)}}}}
			res := Analyze(context.Background(), inv, nil, Options{Policy: Policy{MaxBaseAge: 180 * 24 * time.Hour}, Now: now})
			img := res.Images[0]
			age := -1
			if img.BaseAgeDays != nil {
				age = *img.BaseAgeDays
			}
			b := img.Base
			if b == nil || b.Repository != "library/debian" || b.Tag != "12" {
				t.Fatalf("base %+v", b)
			}
			if b.DetectedBy != tc.by || b.Confidence != Medium || age != tc.age || strings.Join(img.Reasons, ",") != tc.reasons || !strings.Contains(b.Note, tc.note) {
				t.Errorf("got %s (%s), %d days, reasons %v, note %q; want %s (medium), %d days, %q, a note with %q",
					b.DetectedBy, b.Confidence, age, img.Reasons, b.Note, tc.by, tc.age, tc.reasons, tc.note)
			}
		})
	}
}
