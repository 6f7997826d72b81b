package main

import (
	"encoding/json"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
)

// Every command that walks a registry, against one that pages its catalog
// by 5 (rejecting n=1000) and its tag lists by 2, and holds an index-only
// copy: each exits 0, sees every repository, and lists the copy among its
// problems; with --fail-on-problems each exits 1.
func TestWalkingCommands(t *testing.T) {
	srv, e := regtest.Seeded(t, embedded.Options{CatalogMaxEntries: 5, TagsMaxTags: 2})
	mirror := e.Tags()["mirror/alpine:3.20"].String()
	dir := t.TempDir()

	for _, tc := range []struct {
		name string
		argv []string
		// repos returns the repositories the output shows.
		repos func(t *testing.T, out string, d walkDoc) map[string]bool
	}{
		{"inventory", []string{"inventory", srv.Host, "--insecure", "-o", "json"}, imageRepos},
		{"audit", []string{"audit", srv.Host, "--insecure", "-o", "json"}, imageRepos},
		{"backup", []string{"backup", srv.Host, filepath.Join(dir, "backup"), "--insecure", "-o", "json"}, func(t *testing.T, _ string, _ walkDoc) map[string]bool {
			return layoutRepos(t, filepath.Join(dir, "backup"))
		}},
		{"report", []string{"report", srv.Host, "--insecure", "-o", "markdown"}, func(t *testing.T, out string, _ walkDoc) map[string]bool {
			got := map[string]bool{}
			for _, repo := range e.Repositories() {
				if strings.Contains(out, "| "+repo+" |") {
					got[repo] = true
				}
			}
			return got
		}},
		{"cycle", []string{"cycle", srv.Host, "--insecure", "--config", srv.ConfigFile, "--backup", filepath.Join(dir, "cycle-backup"), "--grace", "0", "-o", "json"}, func(t *testing.T, _ string, _ walkDoc) map[string]bool {
			return layoutRepos(t, filepath.Join(dir, "cycle-backup"))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			argv := tc.argv
			prom := filepath.Join(dir, tc.name+".prom")
			metrics := tc.name == "audit" || tc.name == "backup" || tc.name == "cycle"
			if metrics {
				argv = append(append([]string{}, argv...), "--metrics-file", prom)
			}
			code, out, stderr := runCLI(t, argv...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if metrics {
				raw, err := os.ReadFile(prom)
				if err != nil || !strings.Contains(string(raw), "_problems 1\n") {
					t.Errorf("metrics file has no problems count of 1 (%v):\n%s", err, raw)
				}
			}
			var d walkDoc
			if tc.name != "report" {
				if err := json.Unmarshal([]byte(out), &d); err != nil {
					t.Fatalf("%v: %s", err, out)
				}
				if len(d.Errors) != 0 || len(d.Problems) != 1 || d.Problems[0].Repository != "mirror/alpine" ||
					d.Problems[0].Tag != "3.20" || d.Problems[0].Digest != mirror || d.Problems[0].Kind != "children-absent" || d.Problems[0].Message == "" {
					t.Errorf("errors %v, problems %+v; want mirror/alpine:3.20's children absent", d.Errors, d.Problems)
				}
			} else if !strings.Contains(out, "## Problems in the registry") || !strings.Contains(out, "| mirror/alpine:3.20 | children-absent |") {
				t.Errorf("report has no problem for mirror/alpine:3.20:\n%s", out)
			}
			got := tc.repos(t, out, d)
			for _, repo := range e.Repositories() {
				if !got[repo] && repo != "mirror/alpine" {
					t.Errorf("%s does not show %s", tc.name, repo)
				}
			}
			if len(got) < len(e.Repositories())-1 {
				t.Errorf("%s shows %d repositories, want %d", tc.name, len(got), len(e.Repositories()))
			}

			argv = append(append([]string{}, argv...), "--fail-on-problems")
			if code, _, stderr := runCLI(t, argv...); code != 1 || !strings.Contains(stderr, "1 problem in the registry (--fail-on-problems)") {
				t.Errorf("--fail-on-problems: exit %d, %s", code, stderr)
			}
			if raw, _ := os.ReadFile(prom); metrics && !strings.Contains(string(raw), "_success 0\n") {
				t.Errorf("metrics of a run failed by --fail-on-problems do not say so:\n%s", raw)
			}
		})
	}
}

// walkDoc is what the JSON output of every walking command shares.
type walkDoc struct {
	Images   json.RawMessage `json:"images"`
	Problems []struct {
		Repository, Tag, Digest, Kind, Message string
	} `json:"problems"`
	Errors []any `json:"errors"`
}

// imageRepos lists the repositories of the JSON images.
func imageRepos(t *testing.T, _ string, d walkDoc) map[string]bool {
	var imgs []struct{ Repository string }
	if err := json.Unmarshal(d.Images, &imgs); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, img := range imgs {
		got[img.Repository] = true
	}
	return got
}

// layoutRepos lists the repositories of a backup's index.json.
func layoutRepos(t *testing.T, dir string) map[string]bool {
	raw, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx struct {
		Manifests []struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, m := range idx.Manifests {
		if ref := m.Annotations["org.opencontainers.image.ref.name"]; ref != "" {
			repo, _, _ := strings.Cut(ref, ":")
			got[repo] = true
		}
	}
	return got
}

// A registry behind a self-signed certificate, without --insecure: the
// first line the user sees names the certificate.
func TestUntrustedTLSCommand(t *testing.T) {
	srv, _ := regtest.Seeded(t, embedded.Options{})
	ts := httptest.NewTLSServer(srv.Handler())
	defer ts.Close()
	u, _ := url.Parse(ts.URL)
	for _, argv := range [][]string{
		{"inventory", u.Host, "-v"},
		{"backup", u.Host, t.TempDir(), "-v"},
	} {
		code, _, stderr := runCLI(t, argv...)
		if code != 1 || !strings.Contains(stderr, "x509: certificate signed by unknown authority") || strings.Contains(stderr, "page size") {
			t.Errorf("%v: exit %d, stderr %q; want 1 naming the certificate, no page size", argv, code, stderr)
		}
		for _, line := range strings.Split(strings.TrimSpace(stderr), "\n") {
			if strings.HasPrefix(line, "regkeeper:") && !strings.Contains(line, "TLS failure") {
				t.Errorf("%v: first error line %q does not name the TLS failure", argv, line)
			}
		}
	}
}

// The demo estate keeps its broken mirror/alpine: a problem, not an error.
// audit --exit-code 3 returns 3 for its findings.
func TestDemoEstateExitCodes(t *testing.T) {
	srv, _ := regtest.Seeded(t, embedded.Options{})
	code, out, stderr := runCLI(t, "audit", srv.Host, "--insecure", "--exit-code", "3")
	if code != 3 || !strings.Contains(out, "mirror/alpine:3.20") || strings.Contains(stderr, "error:") {
		t.Errorf("audit --exit-code 3: exit %d\n%s\n%s", code, out, stderr)
	}
	if code, _, _ := runCLI(t, "audit", srv.Host, "--insecure"); code != 0 {
		t.Errorf("audit: exit %d, want 0", code)
	}
}
