package audit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"go.yaml.in/yaml/v3"

	"github.com/regkeeper/regkeeper/internal/duration"
)

// DefaultMaxBaseAge is the base age above which an image is reported when
// no policy says otherwise.
const DefaultMaxBaseAge = 180 * 24 * time.Hour

// Policy is what the audit judges images and their bases against. The
// zero value judges nothing; DefaultPolicy is what the command line and an
// empty policy file start from.
type Policy struct {
	// MaxBaseAge: a base older than this is base-too-old; 0 disables.
	MaxBaseAge time.Duration
	// Ban: a base matching any is base-banned.
	Ban []Pattern
	// Allow: when not empty, a base matching none is base-not-allowed.
	Allow []Pattern

	// MaxImageAge: an image built longer ago than this is image-too-old,
	// and one with no date that is an age is image-undated; 0 disables.
	MaxImageAge time.Duration
	// TagLatestOnly: an image that no tag but "latest" of its repository
	// names is tag-latest-only.
	TagLatestOnly bool
	// RequireLabels: an image whose config lacks any of these labels (or
	// has it empty) is missing-label.
	RequireLabels []string
	// RequireSignature: an image with no signature attached is unsigned.
	RequireSignature bool
	// RequireSBOM: an image with no SBOM attached is no-sbom.
	RequireSBOM bool

	// RegistryAliases are the other names of the registry audited (a
	// host[:port] each): a base named with one of them is this registry's.
	// A base named by any other host whose repository holds the named
	// digest is this registry's too.
	RegistryAliases []string
}

// DefaultPolicy is the policy when nothing says otherwise: bases older than
// DefaultMaxBaseAge, and images reachable only through "latest" (see the
// README for why these two and no other rule are on by default).
func DefaultPolicy() Policy {
	return Policy{MaxBaseAge: DefaultMaxBaseAge, TagLatestOnly: true}
}

// Pattern names bases: a repository glob ("base/*"), a repo:tag glob
// ("base/centos:7*"), or a digest ("sha256:..."), with or without the
// registry host. In globs, * matches any run of characters (slashes
// included) and ? one character.
type Pattern struct {
	Text string
	// Source says where the pattern was given, for the warning when it
	// matches nothing: "--ban", "policy.yaml line 3 (ban)". Set by
	// LoadPolicy and by the caller for flags.
	Source string
	host   string
	repo   *regexp.Regexp
	tag    *regexp.Regexp // nil: any tag
	digest string
}

// ParsePattern validates a pattern.
func ParsePattern(s string) (Pattern, error) {
	p := Pattern{Text: s}
	s = strings.TrimSpace(s)
	if s == "" {
		return p, errors.New("empty pattern")
	}
	if strings.HasPrefix(s, "sha256:") || strings.HasPrefix(s, "sha512:") {
		if _, err := v1.NewHash(s); err != nil {
			return p, fmt.Errorf("pattern %q: not a digest: %v", s, err)
		}
		p.digest = s
		return p, nil
	}
	if strings.ContainsAny(s, " \t\"'") {
		return p, fmt.Errorf("pattern %q: spaces and quotes are not allowed", s)
	}
	if i := strings.Index(s, "/"); i > 0 && (strings.ContainsAny(s[:i], ".:") || s[:i] == "localhost") {
		p.host, s = s[:i], s[i+1:]
	}
	repo, tag := s, ""
	if i := strings.LastIndex(s, ":"); i >= 0 {
		repo, tag = s[:i], s[i+1:]
		if tag == "" {
			return p, fmt.Errorf("pattern %q: empty tag after ':'", p.Text)
		}
	}
	if repo == "" || strings.HasPrefix(repo, "/") || strings.HasSuffix(repo, "/") || strings.Contains(repo, "//") {
		return p, fmt.Errorf("pattern %q: not a repository glob", p.Text)
	}
	p.repo = glob(repo)
	if tag != "" {
		p.tag = glob(tag)
	}
	return p, nil
}

func glob(s string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for _, r := range s {
		switch r {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// Match reports whether the pattern names a base: its repository and tag on
// registry, or one of its digests (platform manifest or index).
func (p Pattern) Match(registry, repo, tag string, digests ...string) bool {
	if p.digest != "" {
		for _, d := range digests {
			if d == p.digest {
				return true
			}
		}
		return false
	}
	if p.host != "" && p.host != registry {
		return false
	}
	if repo == "" || !p.repo.MatchString(repo) {
		return false
	}
	return p.tag == nil || (tag != "" && p.tag.MatchString(tag))
}

// ParseAge parses an age with the duration parser every regkeeper flag
// uses: "180d", "26w", or a Go duration ("4320h").
func ParseAge(s string) (time.Duration, error) {
	return duration.Parse(s)
}

// policyFile is the YAML policy format:
//
//	maxBaseAge: 180d
//	ban:
//	  - base/centos
//	  - docker.io/library/debian:9*
//	allow:
//	  - base/*
//	maxImageAge: 90d
//	tagLatestOnly: true
//	requireLabels:
//	  - org.opencontainers.image.revision
//	requireSignature: true
//	requireSBOM: true
type policyFile struct {
	MaxBaseAge       yaml.Node `yaml:"maxBaseAge"`
	Ban              yaml.Node `yaml:"ban"`
	Allow            yaml.Node `yaml:"allow"`
	MaxImageAge      yaml.Node `yaml:"maxImageAge"`
	TagLatestOnly    yaml.Node `yaml:"tagLatestOnly"`
	RequireLabels    yaml.Node `yaml:"requireLabels"`
	RequireSignature yaml.Node `yaml:"requireSignature"`
	RequireSBOM      yaml.Node `yaml:"requireSBOM"`
	RegistryAliases  yaml.Node `yaml:"registryAliases"`
}

// unknownKeyRe matches yaml's error for a key policyFile lacks.
var unknownKeyRe = regexp.MustCompile(`field (.+) not found in type \S+`)

// policyKeys lists the keys of policyFile, for the unknown-key error.
const policyKeys = "maxBaseAge, ban, allow, maxImageAge, tagLatestOnly, requireLabels, requireSignature, requireSBOM, registryAliases"

// LoadPolicy reads a YAML policy file. Errors name the file and line.
func LoadPolicy(path string) (Policy, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return Policy{}, fmt.Errorf("reading policy: %w", err)
	}
	pol, err := ParsePolicy(raw)
	if err != nil {
		return Policy{}, fmt.Errorf("policy %s: %w", path, err)
	}
	for _, list := range [][]Pattern{pol.Ban, pol.Allow} {
		for i := range list {
			list[i].Source = path + " " + list[i].Source
		}
	}
	return pol, nil
}

// ParsePolicy parses the YAML policy format (see policyFile). Keys it does
// not know are errors, so that a typo does not silently disable a rule.
func ParsePolicy(raw []byte) (Policy, error) {
	pol := DefaultPolicy()
	var f policyFile
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return pol, nil
		}
		var te *yaml.TypeError
		if errors.As(err, &te) {
			// yaml says "line 2: field foo not found in type audit.policyFile":
			// say which keys there are instead of naming a Go type.
			msgs := make([]string, len(te.Errors))
			for i, m := range te.Errors {
				msgs[i] = unknownKeyRe.ReplaceAllString(m, "unknown key ${1} (the keys are "+policyKeys+")")
			}
			return pol, errors.New(strings.Join(msgs, "; "))
		}
		return pol, fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var err error
	for _, age := range []struct {
		key string
		n   yaml.Node
		out *time.Duration
	}{{"maxBaseAge", f.MaxBaseAge, &pol.MaxBaseAge}, {"maxImageAge", f.MaxImageAge, &pol.MaxImageAge}} {
		if age.n.Kind == 0 {
			continue
		}
		if age.n.Kind != yaml.ScalarNode {
			return pol, fmt.Errorf("line %d: %s: want an age such as 180d", age.n.Line, age.key)
		}
		if *age.out, err = ParseAge(age.n.Value); err != nil {
			return pol, fmt.Errorf("line %d: %s: %v", age.n.Line, age.key, err)
		}
	}
	for _, b := range []struct {
		key string
		n   yaml.Node
		out *bool
	}{{"tagLatestOnly", f.TagLatestOnly, &pol.TagLatestOnly}, {"requireSignature", f.RequireSignature, &pol.RequireSignature}, {"requireSBOM", f.RequireSBOM, &pol.RequireSBOM}} {
		if b.n.Kind == 0 {
			continue
		}
		if b.n.Kind != yaml.ScalarNode || b.n.Decode(b.out) != nil {
			return pol, fmt.Errorf("line %d: %s: want true or false", b.n.Line, b.key)
		}
	}
	if n := f.RequireLabels; n.Kind != 0 {
		if n.Kind != yaml.SequenceNode {
			return pol, fmt.Errorf("line %d: requireLabels: want a list of label keys", n.Line)
		}
		for _, item := range n.Content {
			if item.Kind != yaml.ScalarNode || strings.TrimSpace(item.Value) == "" {
				return pol, fmt.Errorf("line %d: requireLabels: want a label key", item.Line)
			}
			pol.RequireLabels = append(pol.RequireLabels, strings.TrimSpace(item.Value))
		}
	}
	if n := f.RegistryAliases; n.Kind != 0 {
		if n.Kind != yaml.SequenceNode {
			return pol, fmt.Errorf("line %d: registryAliases: want a list of HOST[:PORT]", n.Line)
		}
		for _, item := range n.Content {
			h := strings.TrimSpace(item.Value)
			if item.Kind != yaml.ScalarNode || h == "" || strings.ContainsAny(h, "/ ") {
				return pol, fmt.Errorf("line %d: registryAliases: want a HOST[:PORT], got %q", item.Line, item.Value)
			}
			pol.RegistryAliases = append(pol.RegistryAliases, h)
		}
	}
	if pol.Ban, err = patternList("ban", f.Ban); err != nil {
		return pol, err
	}
	if pol.Allow, err = patternList("allow", f.Allow); err != nil {
		return pol, err
	}
	return pol, nil
}

func patternList(key string, n yaml.Node) ([]Pattern, error) {
	if n.Kind == 0 {
		return nil, nil
	}
	if n.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("line %d: %s: want a list of patterns", n.Line, key)
	}
	var out []Pattern
	for _, item := range n.Content {
		if item.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("line %d: %s: want a pattern string", item.Line, key)
		}
		p, err := ParsePattern(item.Value)
		if err != nil {
			return nil, fmt.Errorf("line %d: %s: %v", item.Line, key, err)
		}
		p.Source = fmt.Sprintf("line %d (%s)", item.Line, key)
		out = append(out, p)
	}
	return out, nil
}
