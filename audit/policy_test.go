package audit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPatternMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, repo, tag, digest string
		want                       bool
	}{
		{"base/centos", "base/centos", "7", "", true},
		{"base/*", "base/centos", "7", "", true},
		{"base/*", "team-a/api", "1.0", "", false},
		{"*/centos", "base/centos", "7", "", true},
		{"base/debian:1?", "base/debian", "12", "", true},
		{"base/debian:1?", "base/debian", "9", "", false},
		{"base/debian:12", "base/debian", "", "", false},
		{"reg.example.com:5000/base/debian", "base/debian", "12", "", true},
		{"other.example.com/base/debian", "base/debian", "12", "", false},
		{"sha256:" + strings.Repeat("a", 64), "base/debian", "12", "sha256:" + strings.Repeat("a", 64), true},
		{"sha256:" + strings.Repeat("a", 64), "base/debian", "12", "sha256:" + strings.Repeat("b", 64), false},
	} {
		p, err := ParsePattern(tc.pattern)
		if err != nil {
			t.Fatalf("%q: %v", tc.pattern, err)
		}
		if got := p.Match("reg.example.com:5000", tc.repo, tc.tag, tc.digest); got != tc.want {
			t.Errorf("%q matches %s:%s %s = %v, want %v", tc.pattern, tc.repo, tc.tag, tc.digest, got, tc.want)
		}
	}
	for _, bad := range []string{"", "base/centos:", "sha256:xyz", "/base", "base//x", "base centos"} {
		if _, err := ParsePattern(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestParseAge(t *testing.T) {
	for in, want := range map[string]time.Duration{"180d": 180 * 24 * time.Hour, "2w": 14 * 24 * time.Hour, "36h": 36 * time.Hour, "0": 0} {
		if got, err := ParseAge(in); err != nil || got != want {
			t.Errorf("ParseAge(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "d", "-3d", "soon"} {
		if _, err := ParseAge(bad); err == nil {
			t.Errorf("ParseAge(%q): no error", bad)
		}
	}
}

func TestPolicyFile(t *testing.T) {
	pol, err := LoadPolicy(filepath.Join("..", "testdata", "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if pol.MaxBaseAge != 90*24*time.Hour || len(pol.Ban) != 2 || len(pol.Allow) != 3 ||
		pol.MaxImageAge != 365*24*time.Hour || !pol.TagLatestOnly || len(pol.RequireLabels) != 3 || !pol.RequireSignature || !pol.RequireSBOM {
		t.Errorf("testdata/policy.yaml: %+v", pol)
	}
	empty, err := ParsePolicy(nil)
	if err != nil || empty.MaxBaseAge != DefaultMaxBaseAge || !empty.TagLatestOnly || empty.MaxImageAge != 0 || empty.RequireSignature || empty.RequireSBOM {
		t.Errorf("empty policy: %+v, %v", empty, err)
	}
	off, err := ParsePolicy([]byte("tagLatestOnly: false\nmaxImageAge: 13w\n"))
	if err != nil || off.TagLatestOnly || off.MaxImageAge != 13*7*24*time.Hour {
		t.Errorf("tagLatestOnly: false, maxImageAge: 13w: %+v, %v", off, err)
	}

	aliases, err := ParsePolicy([]byte("registryAliases:\n  - registry.internal:5000\n  - ' reg.example.com '\n"))
	if err != nil || strings.Join(aliases.RegistryAliases, ",") != "registry.internal:5000,reg.example.com" {
		t.Errorf("registryAliases: %q, %v", aliases.RegistryAliases, err)
	}

	for _, tc := range []struct{ yaml, msg string }{
		{"maxBaseAge: 180x\n", "line 1: maxBaseAge"},
		{"registryAliases: reg.example.com\n", "line 1: registryAliases: want a list"},
		{"registryAliases:\n  - reg.example.com/base\n", "line 2: registryAliases: want a HOST[:PORT]"},
		{"ban:\n  - base/centos\n  - 'base/centos:'\n", "line 3: ban"},
		{"allow: base/*\n", "line 1: allow: want a list"},
		{"bans:\n  - x\n", "line 1: unknown key bans (the keys are maxBaseAge, ban, allow,"},
		{"ban: [unclosed\n", "line"},
		{"maxImageAge: soon\n", "line 1: maxImageAge"},
		{"maxBaseAge: 90d\ntagLatestOnly: maybe\n", "line 2: tagLatestOnly: want true or false"},
		{"requireSignature: [true]\n", "line 1: requireSignature"},
		{"requireLabels: org.opencontainers.image.source\n", "line 1: requireLabels: want a list"},
		{"requireLabels:\n  - ''\n", "line 2: requireLabels: want a label key"},
		{"requireSbom: true\n", "unknown key requireSbom (the keys are"},
	} {
		dir := t.TempDir()
		f := filepath.Join(dir, "p.yaml")
		os.WriteFile(f, []byte(tc.yaml), 0o644)
		_, err := LoadPolicy(f)
		if err == nil || !strings.Contains(err.Error(), tc.msg) || !strings.Contains(err.Error(), f) {
			t.Errorf("%q: err %v, want the file and %q", tc.yaml, err, tc.msg)
		}
		if err != nil && strings.Contains(err.Error(), "policyFile") {
			t.Errorf("%q: err %v names a Go type", tc.yaml, err)
		}
	}
}
