package usage

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const (
	ociIndex    = "application/vnd.oci.image.index.v1+json"
	ociManifest = "application/vnd.oci.image.manifest.v1+json"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

// ev builds an event: action, repo, tag (may be ""), digest, method, agent.
func ev(id string, at time.Time, action, repo, tag, dgst, mt, method, ua string, refs ...string) Event {
	var e Event
	e.ID, e.Timestamp, e.Action = id, at, action
	e.Target.Repository, e.Target.Tag, e.Target.Digest, e.Target.MediaType = repo, tag, dgst, mt
	e.Target.URL = "http://r/v2/" + repo + "/manifests/" + dgst
	if mt == "application/octet-stream" {
		e.Target.URL = "http://r/v2/" + repo + "/blobs/" + dgst
	}
	for _, r := range refs {
		e.Target.References = append(e.Target.References, struct {
			MediaType string `json:"mediaType"`
			Digest    string `json:"digest"`
		}{ociManifest, r})
	}
	e.Request.Method, e.Request.UserAgent, e.Request.Addr = method, ua, "10.0.0.1:4000"
	return e
}

func newLedger(t *testing.T, c *clock, opts ...Option) *Ledger {
	t.Helper()
	l, err := OpenWrite(filepath.Join(t.TempDir(), "usage.db"), append(opts, WithClock(c.Now))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func record(t *testing.T, l *Ledger, evs ...Event) Result {
	t.Helper()
	res, err := l.Record(context.Background(), &Envelope{Events: evs})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestLedgerCrediting(t *testing.T) {
	c := &clock{now: t0}
	l := newLedger(t, c, WithIgnore(Ignore{UserAgents: []string{"Trivy"}}))
	if err := l.StartListening("serve", time.Minute); err != nil {
		t.Fatal(err)
	}
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	beat := func(m int) {
		c.now = at(m)
		if err := l.Heartbeat(); err != nil {
			t.Fatal(err)
		}
	}
	record(t, l,
		ev("p1", at(0), "push", "app", "", "sha256:c1", ociManifest, "PUT", "crane"),
		ev("p2", at(0), "push", "app", "", "sha256:c2", ociManifest, "PUT", "crane"),
		ev("p3", at(0), "push", "app", "v1", "sha256:ix", ociIndex, "PUT", "crane", "sha256:c1", "sha256:c2"),
		ev("p4", at(0), "push", "app", "solo", "sha256:s", ociManifest, "PUT", "crane"),
	)
	beat(1)
	// a docker pull: index by tag, then a child by digest, same client: one pull
	record(t, l, ev("g1", at(1), "pull", "app", "v1", "sha256:ix", ociIndex, "GET", "docker/27"))
	record(t, l, ev("g2", at(1), "pull", "app", "", "sha256:c1", ociManifest, "GET", "docker/27"))
	// a pinned child pulled by another client: a second pull
	beat(5)
	record(t, l, ev("g3", at(5), "pull", "app", "", "sha256:c2", ociManifest, "GET", "containerd/2"))
	// HEAD only, a duplicate, a scanner and regkeeper itself
	beat(6)
	res := record(t, l,
		ev("h1", at(6), "pull", "app", "solo", "sha256:s", ociManifest, "HEAD", "crane"),
		ev("g3", at(5), "pull", "app", "", "sha256:c2", ociManifest, "GET", "containerd/2"),
		ev("s1", at(6), "pull", "app", "solo", "sha256:s", ociManifest, "GET", "trivy/0.50"),
		ev("r1", at(6), "pull", "app", "v1", "sha256:ix", ociIndex, "GET", "regkeeper/dev go-containerregistry/v0.20"),
		ev("b1", at(6), "pull", "app", "", "sha256:layer", "application/octet-stream", "GET", "crane"),
	)
	res.Unlinked = nil
	if diff := cmp.Diff(Result{Stored: 1, Duplicates: 1, Ignored: 2, Skipped: 1}, res); diff != "" {
		t.Errorf("result (-want +got):\n%s", diff)
	}
	beat(7)

	for _, tc := range []struct {
		tag       string
		since     time.Time
		wantLast  time.Time
		wantKnown bool
		wantPulls int64
	}{
		{"v1", t0, at(5), true, 2},
		{"solo", t0, time.Time{}, true, 0},
		{"solo", t0.Add(-time.Hour), time.Time{}, false, 0}, // before the ledger listened
		{"never", t0, time.Time{}, true, 0},
	} {
		last, known, err := l.LastPull("app", tc.tag, tc.since)
		if err != nil {
			t.Fatal(err)
		}
		if !last.Equal(tc.wantLast) || known != tc.wantKnown {
			t.Errorf("LastPull(%s, %s) = %v, %v; want %v, %v", tc.tag, tc.since, last, known, tc.wantLast, tc.wantKnown)
		}
		n, _, err := l.Pulls("app", tc.tag, tc.since)
		if err != nil {
			t.Fatal(err)
		}
		if n != tc.wantPulls {
			t.Errorf("Pulls(%s) = %d, want %d", tc.tag, n, tc.wantPulls)
		}
	}
	u, err := l.Usage("app", "solo", "")
	if err != nil {
		t.Fatal(err)
	}
	if u.LastHead == nil || !u.LastHead.Equal(at(6)) || u.Ignored != 1 {
		t.Errorf("solo: lastHead %v ignored %d, want %v and 1", u.LastHead, u.Ignored, at(6))
	}

	// the listener dies (no stop), comes back later: the gap is unknown
	l.session = nil
	c.now = at(60)
	if err := l.StartListening("serve", time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, known, _ := l.LastPull("app", "solo", at(2)); known {
		t.Error("LastPull over a gap is known, want unknown")
	}
	if _, known, _ := l.LastPull("app", "solo", at(59)); known {
		t.Error("LastPull from just before the new session: known, want unknown")
	}
	c.now = at(62)
	if err := l.Heartbeat(); err != nil {
		t.Fatal(err)
	}
	if _, known, _ := l.LastPull("app", "solo", at(61)); !known {
		t.Error("LastPull within the new session: want known")
	}
	s, err := l.Summarize(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Interval{{at(7), at(60)}}, s.Gaps); diff != "" {
		t.Errorf("gaps (-want +got):\n%s", diff)
	}
}

func TestInUse(t *testing.T) {
	c := &clock{now: t0}
	l := newLedger(t, c)
	record(t, l, ev("p3", t0, "push", "app", "v1", "sha256:ix", ociIndex, "PUT", "crane", "sha256:c1"))
	if _, running, _ := l.Freshness(); !running.IsZero() {
		t.Fatalf("running freshness %v before any snapshot", running)
	}
	err := l.RecordInUse(context.Background(), Snapshot{Source: "cluster prod", At: t0, Images: []InUseImage{
		{Ref: "reg.example.com/app@sha256:c1", Host: "reg.example.com", Repo: "app", Digest: "sha256:c1", Where: []string{"cluster prod: Deployment shop/web"}},
		{Ref: "reg.example.com/app:v2", Host: "reg.example.com", Repo: "app", Tag: "v2", Where: []string{"cluster prod: ReplicaSet shop/web-1 (rollback)"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		tag, digest string
		want        []string
	}{
		{"v1", "sha256:ix", []string{"cluster prod: Deployment shop/web"}},
		{"v2", "", []string{"cluster prod: ReplicaSet shop/web-1 (rollback)"}},
		{"v3", "sha256:other", nil},
	} {
		in, where, err := l.InUse("app", tc.tag, tc.digest)
		if err != nil {
			t.Fatal(err)
		}
		if in != (tc.want != nil) || !cmp.Equal(tc.want, where) {
			t.Errorf("InUse(%s, %s) = %v %v, want %v", tc.tag, tc.digest, in, where, tc.want)
		}
	}
	if _, running, _ := l.Freshness(); !running.Equal(t0) {
		t.Errorf("running freshness %v, want %v", running, t0)
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c, err := LoadConfig(write("ok.yaml", "ignoreUserAgents: [trivy]\nignoreAccounts: [mirror-bot]\nwindowDays: 30\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Ignore: Ignore{UserAgents: []string{"trivy"}, Accounts: []string{"mirror-bot"}}, WindowDays: 30}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
	if _, err := LoadConfig(write("typo.yaml", "ignoreUserAgent: [trivy]\n")); err == nil {
		t.Error("a misspelt key is accepted")
	}
	for ua, want := range map[string]bool{
		"regkeeper/dev go-containerregistry/v0.22": true,
		"Trivy/0.50":     true,
		"containerd/2.0": false,
	} {
		if got := c.Ignore.ignored(ua, ""); got != want {
			t.Errorf("ignored(%q) = %v, want %v", ua, got, want)
		}
	}
	if !c.Ignore.ignored("docker/27", "mirror-bot") {
		t.Error("the ignored account is counted")
	}
}
