// Package stock runs the stock distribution registry binary (`registry
// serve`, v3.1.2, installed by scripts/setup-registry into
// ~/.cache/regkeeper/bin) for tests: a config written to a temporary
// directory, filesystem storage, a free 127.0.0.1 port, readiness awaited,
// and the process stopped with the test. Tests skip, saying why, only when
// the binary is absent.
package stock

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/regkeeper/regkeeper/internal/testbed/tools"
)

// Endpoint is one notifications endpoint of the registry.
type Endpoint struct {
	Name, URL string
	// Token, when set, is sent as "Authorization: Bearer TOKEN".
	Token string
	// IgnoreActions are actions the registry does not send (e.g. "push").
	IgnoreActions []string
}

// Options configure the registry.
type Options struct {
	// Endpoints receive the registry's notifications (with references).
	Endpoints []Endpoint
	// Extra is YAML appended to the config (top-level keys).
	Extra string
	// NoDelete leaves deletes off, as distribution's default and its
	// example config do.
	NoDelete bool
}

// Registry is a running stock registry.
type Registry struct {
	// Host is 127.0.0.1:PORT.
	Host string
	// Dir holds the config, the storage (Dir/storage) and the logs.
	Dir string
	cmd *exec.Cmd

	mu             sync.Mutex
	stdout, stderr bytes.Buffer
}

// Binary is the path of the stock registry binary: $REGKEEPER_REGISTRY_BIN,
// else the one scripts/setup-registry installed,
// ${XDG_CACHE_HOME:-$HOME/.cache}/regkeeper/bin/registry.
func Binary() string {
	if p := os.Getenv("REGKEEPER_REGISTRY_BIN"); p != "" {
		return p
	}
	return filepath.Join(tools.CacheDir("bin"), "registry")
}

// FreePort returns a free 127.0.0.1 address.
func FreePort(t testing.TB) string {
	t.Helper()
	port, err := tools.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", port)
}

// Config returns the registry's config for storage root, address and opts.
func Config(root, addr string, opts Options) string {
	var b strings.Builder
	fmt.Fprintf(&b, `version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: %t
http:
  addr: %s
`, root, !opts.NoDelete, addr)
	if len(opts.Endpoints) > 0 {
		b.WriteString("notifications:\n  events:\n    includereferences: true\n  endpoints:\n")
		for _, e := range opts.Endpoints {
			fmt.Fprintf(&b, "    - name: %s\n      url: %s\n      timeout: 2s\n      threshold: 1\n      backoff: 200ms\n", e.Name, e.URL)
			if e.Token != "" {
				fmt.Fprintf(&b, "      headers:\n        Authorization: [\"Bearer %s\"]\n", e.Token)
			}
			if len(e.IgnoreActions) > 0 {
				fmt.Fprintf(&b, "      ignore:\n        actions: [%s]\n", strings.Join(e.IgnoreActions, ", "))
			}
		}
	}
	b.WriteString(opts.Extra)
	return b.String()
}

// Start starts the registry, waits until /v2/ answers, and stops it when
// the test ends.
func Start(t testing.TB, opts Options) *Registry {
	t.Helper()
	bin := Binary()
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("stock registry binary %s is absent (run scripts/setup-registry): %v", bin, err)
	}
	dir := t.TempDir()
	addr := FreePort(t)
	cfg := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfg, []byte(Config(filepath.Join(dir, "storage"), addr, opts)), 0o600); err != nil {
		t.Fatal(err)
	}
	r := &Registry{Host: addr, Dir: dir}
	r.cmd = exec.Command(bin, "serve", cfg)
	r.cmd.Stdout = &lockedWriter{&r.mu, &r.stdout}
	r.cmd.Stderr = &lockedWriter{&r.mu, &r.stderr}
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = r.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = r.cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("registry log (end):\n%s", tail(r.Stderr(), 4000))
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v2/", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r
			}
		}
		select {
		case <-exited:
			t.Fatalf("registry exited before it was ready:\n%s", tail(r.Stderr(), 4000))
		case <-ctx.Done():
			t.Fatalf("registry not ready after 30s:\n%s", tail(r.Stderr(), 4000))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stdout is the registry's access log so far (combined log format).
func (r *Registry) Stdout() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stdout.String()
}

// Stderr is the registry's own log so far.
func (r *Registry) Stderr() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stderr.String()
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
