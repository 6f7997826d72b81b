package usage

import (
	"bytes"
	"compress/gzip"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regkeeper/regkeeper/internal/testbed/stock"
)

func TestParseLine(t *testing.T) {
	for _, tc := range []struct {
		line string
		want logLine
		ok   bool
	}{
		{
			`10.1.2.3 - alice [05/Dec/2026:23:56:03 +0000] "GET /v2/team/app/manifests/v1 HTTP/1.1" 200 423 "" "docker/27.0 go/go1.22"`,
			logLine{at: time.Date(2026, 12, 5, 23, 56, 3, 0, time.UTC), addr: "10.1.2.3", who: "alice", method: "GET", uri: "/v2/team/app/manifests/v1", status: 200, ua: "docker/27.0 go/go1.22"}, true,
		},
		{ // common log format: no referer, no agent
			`10.1.2.3 - - [05/Dec/2026:23:56:03 +0100] "HEAD /v2/app/manifests/sha256:abc HTTP/1.1" 200 0`,
			logLine{at: time.Date(2026, 12, 5, 22, 56, 3, 0, time.UTC), addr: "10.1.2.3", method: "HEAD", uri: "/v2/app/manifests/sha256:abc", status: 200}, true,
		},
		{
			`time="2026-12-05T23:56:03.973259956Z" level=info msg="response completed" http.request.method=GET http.request.remoteaddr="127.0.0.1:41134" http.request.uri=/v2/sentinel/manifests/s1 http.request.useragent=go-containerregistry/v0.22.1 http.response.status=200 vars.name=sentinel`,
			logLine{at: time.Date(2026, 12, 5, 23, 56, 3, 973259956, time.UTC), addr: "127.0.0.1:41134", method: "GET", uri: "/v2/sentinel/manifests/s1", status: 200, ua: "go-containerregistry/v0.22.1"}, true,
		},
		{
			`{"time":"2026-12-05T23:56:03Z","msg":"response completed","http.request.method":"GET","http.request.uri":"/v2/a/manifests/b","http.response.status":200,"auth.user.name":"ci"}`,
			logLine{at: time.Date(2026, 12, 5, 23, 56, 3, 0, time.UTC), method: "GET", uri: "/v2/a/manifests/b", status: 200, who: "ci"}, true,
		},
		{`time="2026-12-05T23:56:03Z" level=info msg="listening on 127.0.0.1:5000"`, logLine{}, false},
	} {
		got, ok := parseLine(tc.line)
		if ok != tc.ok || !got.at.Equal(tc.want.at) {
			t.Errorf("%s: ok %v at %v, want %v %v", tc.line, ok, got.at, tc.ok, tc.want.at)
			continue
		}
		got.at, tc.want.at = time.Time{}, time.Time{}
		if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(logLine{})); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.line, diff)
		}
	}
}

// The stock registry's own logs (the access log on stdout, "response
// completed" on stderr) backfill the ledger; the second log covers the
// same period and counts nothing again.
func TestImportStockRegistryLogs(t *testing.T) {
	reg := stock.Start(t, stock.Options{})
	ref := func(s string) name.Reference {
		r, err := name.ParseReference(reg.Host+"/"+s, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	img, _ := random.Image(128, 1)
	if err := remote.Write(ref("app:v1"), img); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	for _, r := range []string{"app:v1", "app@" + d.String()} {
		if _, err := remote.Get(ref(r)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := remote.Head(ref("app:v1")); err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Get(ref("app:v1"), remote.WithUserAgent("regkeeper/test")); err != nil {
		t.Fatal(err)
	}

	// the registry writes a request's log lines after its response: wait
	// until the last request is in both logs
	logged := func(log string) bool {
		for _, line := range strings.Split(log, "\n") {
			if strings.Contains(line, "regkeeper/test") && strings.Contains(line, "/manifests/") {
				return true
			}
		}
		return false
	}
	for i := 0; !logged(reg.Stdout()) || !logged(reg.Stderr()); i++ {
		if i > 600 {
			t.Fatalf("the last request is not in the registry's logs after 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// a rotated log, gzipped in two members (as logrotate's delaycompress
	// and a later append leave it): read as one stream
	var gz bytes.Buffer
	half := len(reg.Stdout()) / 2
	for _, part := range []string{reg.Stdout()[:half], reg.Stdout()[half:]} {
		zw := gzip.NewWriter(&gz)
		if _, err := zw.Write([]byte(part)); err != nil {
			t.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ file, log string }{
		{"access.log", reg.Stdout()},
		{"registry.log", reg.Stderr()},
		{"access.log.1.gz", gz.String()},
	} {
		c := &clock{now: time.Now().Add(time.Minute)}
		l := newLedger(t, c)
		res, err := l.Import(context.Background(), tc.file, strings.NewReader(tc.log))
		if err != nil {
			t.Fatal(err)
		}
		if res.Requests != 4 || res.Stored != 3 || res.Ignored != 1 || res.Covered != 0 {
			t.Errorf("%s: %d requests, %d stored, %d ignored, %d covered; want 4, 3, 1, 0", tc.file, res.Requests, res.Stored, res.Ignored, res.Covered)
		}
		// the same log again: its period is covered, nothing counts twice
		again, err := l.Import(context.Background(), tc.file, strings.NewReader(tc.log))
		if err != nil {
			t.Fatal(err)
		}
		if again.Covered != 4 || again.Stored != 0 {
			t.Errorf("%s again: %d covered, %d stored; want 4, 0", tc.file, again.Covered, again.Stored)
		}
		// the log names no digest for a by-tag pull: the tag has its own
		// pull and HEAD; the by-digest pull stays on the digest
		last, known, err := l.LastPull("app", "v1", res.From)
		if err != nil {
			t.Fatal(err)
		}
		if last.IsZero() || !known {
			t.Errorf("%s: LastPull(app:v1) = %v, %v; want a time, known", tc.file, last, known)
		}
		u, err := l.Usage("app", "v1", "")
		if err != nil {
			t.Fatal(err)
		}
		if u.LastHead == nil || u.Ignored != 1 {
			t.Errorf("%s: app:v1 lastHead %v ignored %d; want a time and 1", tc.file, u.LastHead, u.Ignored)
		}
	}
}
