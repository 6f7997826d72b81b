// Package inventory walks a registry over the v2 API into Image records: every
// repository and tag, with digests, platforms, sizes, created dates, labels
// and annotations.
//
// The JSON field names of Result are a contract (the README); do not rename.
package inventory

import (
	"log/slog"
	"regexp"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/regkeeper/regkeeper/internal/client"
	"github.com/regkeeper/regkeeper/internal/progress"
	"github.com/regkeeper/regkeeper/internal/walk"
)

// Result is an inventory of one registry.
type Result struct {
	Registry string  `json:"registry"`
	Images   []Image `json:"images"`
	// Problems are what is broken in the registry (internal/walk); the
	// tags concerned are still in Images as far as they could be read.
	Problems []walk.Problem `json:"problems"`
	// Errors are the repositories and tags that could not be read.
	Errors []Error `json:"errors"`

	// Selection counts what --repo and --tag selected; Listed is every tag
	// of every selected repository, before the tag filter (not in the
	// JSON).
	Selection walk.Selection      `json:"selection"`
	Listed    map[string][]string `json:"-"`
}

// Image is one tag of one repository.
type Image struct {
	Repository string `json:"repository"`
	Tag        string `json:"tag"`
	Digest     string `json:"digest"`
	MediaType  string `json:"mediaType"`
	// Size is the compressed bytes a pull of the tag transfers: manifests,
	// configs and layers, each distinct blob counted once.
	Size int64 `json:"size"`
	// Created is the image config's created time as recorded (RFC 3339); for
	// an index, the newest of its platforms. Empty when unknown.
	Created     string            `json:"created,omitempty"`
	Platforms   []Platform        `json:"platforms"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	// Usage is set when the inventory read a usage ledger (--usage); its
	// fields are then in the JSON, null where the ledger has no answer.
	*Usage
}

// Usage is what the usage ledger says of a tag.
type Usage struct {
	// LastPulled is the last pull the ledger saw credited to the tag (by
	// tag, by digest, or of a child of its index); null when none.
	LastPulled *time.Time `json:"lastPulled"`
	// Pulls30d is the pulls of the last 30 days; null when the ledger did
	// not listen over all of them and saw none (unknown, not zero).
	Pulls30d *int64 `json:"pulls30d"`
	// InUse says whether the latest in-use evidence names the tag or its
	// digest; null when the ledger holds no in-use evidence at all.
	InUse *bool `json:"inUse"`
	// InUseWhere says where ("cluster prod: Deployment shop/web").
	InUseWhere []string `json:"inUseWhere,omitempty"`
}

// UsageFunc answers usage questions for repo:tag at digest.
type UsageFunc func(repo, tag, digest string) (*Usage, error)

// Platform is one platform manifest of an image (an image that is not an
// index has exactly one).
type Platform struct {
	Platform string `json:"platform"`
	Digest   string `json:"digest"`
	Size     int64  `json:"size"`
	Created  string `json:"created,omitempty"`
	// Absent: the index names this platform manifest but its repository
	// does not have it (see Result.Problems).
	Absent bool `json:"absent,omitempty"`

	// Manifest and Config are the parsed platform manifest and image config,
	// kept for the packages that build on an inventory (audit) so that they
	// need not fetch them again. Not part of the JSON output.
	Manifest *v1.Manifest   `json:"-"`
	Config   *v1.ConfigFile `json:"-"`
}

// Error is a repository, tag or manifest the walk could not read.
type Error = walk.Error

// Options for Run. The zero value walks every repository and tag with
// client.DefaultJobs concurrent requests.
type Options struct {
	Client client.Options
	// Repo and Tag, when set, select repositories and tags by regular
	// expression.
	Repo, Tag *regexp.Regexp
	// Progress draws a bar over repositories; nil draws nothing.
	Progress *progress.Reporter
	// Logger receives per-repository notices; nil discards them.
	Logger *slog.Logger
	// Now is used for nothing but tests of relative output; zero means
	// time.Now.
	Now time.Time
	// Usage, when set, fills every Image's Usage (inventory --usage).
	Usage UsageFunc
}
