package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// runCLI runs the real root command and returns exit code, stdout, stderr.
func runCLI(t *testing.T, argv ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), argv, &out, &errb)
	return code, out.String(), errb.String()
}

func TestExitCodes(t *testing.T) {
	for _, tc := range []struct {
		argv []string
		code int
		msg  string
	}{
		{[]string{"version"}, 0, ""},
		{[]string{"nonsense"}, 2, "unknown command"},
		{[]string{"version", "--no-such-flag"}, 2, "unknown flag"},
		{[]string{"version", "extra"}, 2, "unexpected argument"},
		{[]string{"demo", "--jobs", "0"}, 2, "--jobs must be at least 1"},
		{[]string{"inventory", "127.0.0.1:1", "-o", "yaml"}, 2, "unknown output format"},
		{[]string{"demo", "--progress", "sometimes"}, 2, "unknown progress mode"},
	} {
		code, _, stderr := runCLI(t, tc.argv...)
		if code != tc.code || !strings.Contains(stderr, tc.msg) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d mentioning %q", tc.argv, code, stderr, tc.code, tc.msg)
		}
	}
}

// Every command's help shows a runnable example.
func TestHelpHasExamples(t *testing.T) {
	for _, c := range newRootCmd().Commands() {
		if c.Hidden || c.Name() == "help" {
			continue
		}
		if !strings.Contains(c.Example, "regkeeper "+c.Name()) {
			t.Errorf("%s: --help has no example running it", c.Name())
		}
	}
}

func TestDemo(t *testing.T) {
	code, out, stderr := runCLI(t, "demo")
	if code != 0 {
		t.Fatalf("demo exit %d: %s", code, stderr)
	}
	for _, want := range []string{"team-a/api", "mirror/alpine", "untagged leftovers",
		"gc         ok", "deleted 19 manifests, 52 blobs: 237.9 KiB reclaimed",
		"retain     ok", "kept 8 tags, removed 10 (gc frees 6.6 KiB)", "1 base-banned", "23 of 23 tags pulled back",
		"1 problem in the registry", "mirror/alpine:3.20  children-absent"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(stderr, "index child absent") || strings.Contains(out, "could not be read") {
		t.Errorf("demo reports the index-only copy as a failure:\n%s\n%s", out, stderr)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestDemoServe(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb syncBuffer
	done := make(chan int)
	go func() { done <- run(ctx, []string{"demo", "--serve", "--dir", t.TempDir()}, &out, &errb) }()

	re := regexp.MustCompile(`serving on http://(\S+)`)
	var host string
	for deadline := time.Now().Add(60 * time.Second); host == "" && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			host = m[1]
		}
	}
	if host == "" {
		t.Fatalf("demo --serve never said where it serves: %s %s", out.String(), errb.String())
	}
	reg, _ := name.NewRegistry(host, name.Insecure)
	repos, err := remote.Catalog(ctx, reg)
	if err != nil {
		t.Fatal(err)
	}
	// the sample estate's 10 and the demo's ci/app for retention
	if len(repos) != 11 {
		t.Errorf("catalog lists %d repositories, want 11: %v", len(repos), repos)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("demo --serve exit %d after interrupt: %s", code, errb.String())
	}
}
