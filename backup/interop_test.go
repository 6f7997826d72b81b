package backup

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/estate"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
)

// checkPulls fails unless each ref ("repo:tag" or "repo@digest") is in the
// registry at host with the given digest and pulls completely (every blob
// verified).
func checkPulls(t *testing.T, host string, want map[string]v1.Hash) {
	t.Helper()
	for ref, d := range want {
		r := mustRef(t, host+"/"+ref)
		desc, err := remote.Head(r)
		if err != nil {
			t.Errorf("%s: %v", ref, err)
			continue
		}
		if desc.Digest != d {
			t.Errorf("%s restored as %s, want %s", ref, desc.Digest, d)
		}
		if err := regtest.Pull(context.Background(), r); err != nil {
			t.Errorf("pulling %s: %v", ref, err)
		}
	}
}

// attestation is the estate's referrer of team-a/api:1.0 that its
// referrers fallback tag lists (the tagless SBOMs have no such tag and are
// not found on distribution).
func attestation(t *testing.T, e *estate.Estate) v1.Hash {
	t.Helper()
	api := e.Tags()["team-a/api:1.0"]
	for _, m := range e.Manifests {
		if m.Role == estate.RoleFallback && m.Repository == "team-a/api" && len(m.Tags) == 1 && m.Tags[0] == referrersTag(api) {
			return m.Children[0]
		}
	}
	t.Fatal("the estate has no fallback tag for team-a/api:1.0")
	return v1.Hash{}
}

// Layouts written by other tools restore, every digest unchanged, into a
// stock distribution registry: crane pull --format oci (no names: pushed
// by digest into --repository, or reported), with --annotate-ref (full
// references), regctl and oras (bare tags; regctl's referrers fallback tag
// and oras's nameless referrer entries), skopeo (repo:tag).
func TestRestoreLayoutsOfOtherTools(t *testing.T) {
	srv, e := regtest.Seeded(t, embedded.Options{})
	src := srv.Host
	api, edge := e.Tags()["team-a/api:1.0"], e.Tags()["team-e/edge:1.0"]
	att := attestation(t, e)

	t.Run("crane", func(t *testing.T) {
		crane := findClient(t, "crane", true)
		dir := filepath.Join(t.TempDir(), "layout")
		runClient(t, crane, "pull", "--insecure", "--format", "oci", src+"/team-a/api:1.0", src+"/team-e/edge:1.0", dir)
		dst := distributionRegistry(t)
		res, err := Restore(context.Background(), dir, dst, RestoreOptions{Client: regtest.Client()})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Errors) != 2 || !strings.Contains(res.Errors[0].Error, "has no name") || res.ManifestsPushed != 0 {
			t.Errorf("entries with no name: want both reported, nothing pushed: %+v", res)
		}
		res = restore(t, dir, dst, RestoreOptions{Repository: "restored/any"})
		if res.Untagged != 2 {
			t.Errorf("untagged: %d, want 2", res.Untagged)
		}
		checkPulls(t, dst, map[string]v1.Hash{"restored/any@" + api.String(): api, "restored/any@" + edge.String(): edge})
	})

	t.Run("crane-annotate-ref", func(t *testing.T) {
		crane := findClient(t, "crane", true)
		dir := filepath.Join(t.TempDir(), "layout")
		runClient(t, crane, "pull", "--insecure", "--format", "oci", "--annotate-ref", src+"/team-a/api:1.0", src+"/team-e/edge:1.0", dir)
		dst := distributionRegistry(t)
		res := restore(t, dir, dst, RestoreOptions{})
		if res.Images != 2 {
			t.Errorf("images: %d, want 2", res.Images)
		}
		checkPulls(t, dst, map[string]v1.Hash{"team-a/api:1.0": api, "team-e/edge:1.0": edge})
		// --map moves them.
		restore(t, dir, dst, RestoreOptions{Map: []Mapping{{Old: "team-a", New: "archive/team-a"}}})
		checkPulls(t, dst, map[string]v1.Hash{"archive/team-a/api:1.0": api, "team-e/edge:1.0": edge})
	})

	t.Run("regctl", func(t *testing.T) {
		regctl := findClient(t, "regctl", true)
		dir := filepath.Join(t.TempDir(), "layout")
		runClient(t, regctl, "--host", "reg="+src+",tls=disabled", "image", "copy", "--referrers", src+"/team-a/api:1.0", "ocidir://"+dir+":1.0")
		dst := distributionRegistry(t)
		res, err := Restore(context.Background(), dir, dst, RestoreOptions{Client: regtest.Client()})
		if err != nil || len(res.Errors) == 0 || !strings.Contains(res.Errors[0].Error, "bare tag") {
			t.Errorf("bare tags without --repository: want them reported: %v %+v", err, res)
		}
		restore(t, dir, dst, RestoreOptions{Repository: "team-a/api"})
		checkPulls(t, dst, map[string]v1.Hash{"team-a/api:1.0": api, "team-a/api@" + att.String(): att})
		if diff := cmp.Diff([]v1.Hash{att}, digestsOf(referrersOf(t, dst, "team-a/api", api))); diff != "" {
			t.Errorf("referrers (-want +got):\n%s", diff)
		}
	})

	t.Run("oras", func(t *testing.T) {
		oras := findClient(t, "oras", true)
		base := t.TempDir()
		apiDir, edgeDir := filepath.Join(base, "api"), filepath.Join(base, "edge")
		runClient(t, oras, "cp", "-r", "--from-plain-http", src+"/team-a/api:1.0", "--to-oci-layout", apiDir+":1.0")
		runClient(t, oras, "cp", "--from-plain-http", src+"/team-e/edge:1.0", "--to-oci-layout", edgeDir+":edge")
		dst := distributionRegistry(t)
		res := restore(t, apiDir, dst, RestoreOptions{Repository: "team-a/api"})
		if res.Images != 1 || res.Referrers != 1 {
			t.Errorf("oras layout with a referrer: %+v", res)
		}
		// The index's children, listed by oras without names, go with it.
		if res := restore(t, edgeDir, dst, RestoreOptions{Repository: "team-e/edge"}); res.Images != 1 || res.Untagged != 0 {
			t.Errorf("oras layout of an index: %+v", res)
		}
		checkPulls(t, dst, map[string]v1.Hash{"team-a/api:1.0": api, "team-e/edge:edge": edge, "team-a/api@" + att.String(): att})
		if diff := cmp.Diff([]v1.Hash{att}, digestsOf(referrersOf(t, dst, "team-a/api", api))); diff != "" {
			t.Errorf("referrers (-want +got):\n%s", diff)
		}
	})

	t.Run("skopeo", func(t *testing.T) {
		skopeo := findClient(t, "skopeo", true)
		dir := filepath.Join(t.TempDir(), "layout")
		runClient(t, skopeo, "copy", "--preserve-digests", "--src-tls-verify=false", "docker://"+src+"/team-a/api:1.0", "oci:"+dir+":team-a/api:1.0")
		dst := distributionRegistry(t)
		restore(t, dir, dst, RestoreOptions{})
		checkPulls(t, dst, map[string]v1.Hash{"team-a/api:1.0": api})
	})
}

// interopCommands reads the README's table of how other tools read a
// regkeeper backup: tool name to the command, placeholders and all.
func interopCommands(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(b), "<!-- interop table: checked by backup/interop_test.go -->")
	if !ok {
		t.Fatal("README.md has no interop table")
	}
	table, _, _ = strings.Cut(table, "\n\n")
	row := regexp.MustCompile("(?m)^\\| (\\w+) \\| `([^`]+)`")
	out := map[string]string{}
	for _, m := range row.FindAllStringSubmatch(table, -1) {
		out[m[1]] = m[2]
	}
	return out
}

// Every command of the README's interop table, run with the tools that
// are installed against a real regkeeper backup: the image arrives with
// its digest, and the referrer its fallback tag lists with it.
func TestOtherToolsReadBackup(t *testing.T) {
	cmds := interopCommands(t)
	for _, tool := range []string{"skopeo", "regctl", "oras", "crane"} {
		if cmds[tool] == "" {
			t.Errorf("README interop table has no row for %s", tool)
		}
	}
	srv, e := regtest.Seeded(t, embedded.Options{})
	dir := filepath.Join(t.TempDir(), "backup")
	opts := testOptions()
	opts.Repo = regexp.MustCompile(`^team-(a/api|e/edge)$`)
	backup(t, srv.Host, dir, opts)
	api, edge := e.Tags()["team-a/api:1.0"], e.Tags()["team-e/edge:1.0"]
	att := attestation(t, e)
	plainHTTP := func(tool, dst string, args []string) []string {
		// Plain HTTP to the test registry, which the README's commands
		// for a real registry do not need.
		switch tool {
		case "skopeo":
			return append([]string{args[1], "--dest-tls-verify=false"}, args[2:]...)
		case "regctl":
			return append([]string{"--host", "reg=" + dst + ",tls=disabled"}, args[1:]...)
		case "oras":
			return append(args[1:], "--to-plain-http")
		}
		return append(args[1:], "--insecure")
	}

	for _, tool := range []string{"skopeo", "regctl", "oras", "crane"} {
		t.Run(tool, func(t *testing.T) {
			bin := findClient(t, tool, true)
			dst := distributionRegistry(t)
			line := strings.NewReplacer("DIR", dir, "REGISTRY", dst, "DIGEST", api.String()).Replace(cmds[tool])
			args := strings.Fields(line)
			if args[0] != tool {
				t.Fatalf("README row %s runs %q", tool, args[0])
			}
			runClient(t, bin, plainHTTP(tool, dst, args)...)
			want := map[string]v1.Hash{"team-a/api@" + api.String(): api}
			switch tool {
			case "skopeo":
				want["team-a/api:1.0"] = api
			case "regctl", "oras":
				want["team-a/api:1.0"] = api
				want["team-a/api@"+att.String()] = att
			case "crane": // everything, into the one repository
				want["team-a/api@"+edge.String()] = edge
			}
			checkPulls(t, dst, want)
			if tool == "regctl" || tool == "oras" {
				if diff := cmp.Diff([]v1.Hash{att}, digestsOf(referrersOf(t, dst, "team-a/api", api))); diff != "" {
					t.Errorf("referrers after %s (-want +got):\n%s", tool, diff)
				}
			}

			// A multi-arch index, as the table's last column says.
			switch tool {
			case "regctl", "oras":
				dst = distributionRegistry(t)
				line = strings.NewReplacer("DIR", dir, "REGISTRY", dst, "DIGEST", edge.String()).Replace(cmds[tool])
				runClient(t, bin, plainHTTP(tool, dst, strings.Fields(line))...)
				checkPulls(t, dst, map[string]v1.Hash{"team-a/api:1.0": edge})
			case "skopeo":
				dst = distributionRegistry(t)
				line = strings.NewReplacer("DIR", dir, "REGISTRY", dst, "team-a/api:1.0", "team-e/edge:1.0").Replace(cmds[tool])
				args := plainHTTP(tool, dst, strings.Fields(line))
				cmd := exec.Command(bin, append([]string{args[0], "--all"}, args[1:]...)...)
				if out, err := cmd.CombinedOutput(); err == nil {
					t.Errorf("skopeo copied an index with --preserve-digests: update the README\n%s", out)
				}
			}
		})
	}
}
