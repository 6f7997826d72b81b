// Package azurite runs Azurite's blob service (Azure Storage's emulator) on
// 127.0.0.1 for the Azure tests, and talks to it through the Azure SDK's
// azblob (the client distribution's azure driver uses).
// scripts/setup-azurite installs it from the npm registry.
package azurite

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"

	"github.com/regkeeper/regkeeper/internal/testbed/tools"
)

// ErrNotInstalled: no azurite-blob in REGKEEPER_AZURITE, the cache or PATH.
var ErrNotInstalled = errors.New("azurite not installed (run scripts/setup-azurite, or set REGKEEPER_AZURITE)")

// Azurite's well-known development account (published in its README):
// every server Start starts has it.
const (
	AccountName = "devstoreaccount1"
	AccountKey  = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// CacheDir is where scripts/setup-azurite installs Azurite:
// ${XDG_CACHE_HOME:-$HOME/.cache}/regkeeper/azurite.
func CacheDir() string { return tools.CacheDir("azurite") }

// Find returns the azurite-blob command: $REGKEEPER_AZURITE, then the one
// scripts/setup-azurite installed, then azurite-blob on PATH.
func Find() (string, error) {
	return tools.Find("REGKEEPER_AZURITE", filepath.Join(CacheDir(), "node_modules", ".bin", "azurite-blob"), "azurite-blob", ErrNotInstalled)
}

// Server is a running Azurite blob service.
type Server struct {
	// ServiceURL is "http://127.0.0.1:PORT/devstoreaccount1", the azure
	// driver's serviceurl.
	ServiceURL string
	// Client is a client for it, as the development account.
	Client *azblob.Client
	*tools.Process
}

// Start runs bin (azurite-blob) with its data in dir, on a free port of
// 127.0.0.1, and waits until it serves requests. Its output goes to
// dir/../azurite.log (dir's parent must be writable).
func Start(ctx context.Context, bin, dir string) (*Server, error) {
	port, err := tools.FreePort()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	// --skipApiVersionCheck: the SDK may speak a newer API version than
	// this Azurite knows; --loose: it ignores headers it does not support.
	cmd := exec.Command(bin, "--blobHost", "127.0.0.1", "--blobPort", fmt.Sprint(port),
		"--location", dir, "--skipApiVersionCheck", "--loose", "--disableTelemetry", "--silent")
	cmd.Dir = dir
	proc, err := tools.StartProcess("azurite", cmd, filepath.Join(filepath.Dir(dir), "azurite.log"))
	if err != nil {
		return nil, err
	}
	s := &Server{ServiceURL: fmt.Sprintf("http://127.0.0.1:%d/%s", port, AccountName), Process: proc}
	cred, err := azblob.NewSharedKeyCredential(AccountName, AccountKey)
	if err != nil {
		s.Close()
		return nil, err
	}
	// No retries of the SDK's own: the loop below retries until ready,
	// and a test's request that fails should say so at once.
	s.Client, err = azblob.NewClientWithSharedKeyCredential(s.ServiceURL, cred,
		&azblob.ClientOptions{ClientOptions: azcore.ClientOptions{Retry: policy.RetryOptions{MaxRetries: -1}}})
	if err != nil {
		s.Close()
		return nil, err
	}
	// Ready when the blob service answers an authenticated request.
	err = proc.WaitReady(ctx, 2*time.Minute, "serve the blob API at "+s.ServiceURL, func(ctx context.Context) error {
		_, err := s.Client.ServiceClient().GetProperties(ctx, nil)
		return err
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// CreateContainer creates a container (distribution's azure driver does
// not: it expects the container to exist).
func (s *Server) CreateContainer(ctx context.Context, name string) error {
	if _, err := s.Client.CreateContainer(ctx, name, nil); err != nil && !bloberror.HasCode(err, bloberror.ContainerAlreadyExists) {
		return fmt.Errorf("creating container %s: %w%s", name, err, s.LogTail())
	}
	return nil
}

// Blobs are the blobs in container whose names start with prefix, with
// their sizes.
func (s *Server) Blobs(ctx context.Context, container, prefix string) (map[string]int64, error) {
	out := map[string]int64{}
	pager := s.Client.NewListBlobsFlatPager(container, &azblob.ListBlobsFlatOptions{Prefix: &prefix})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing container %s: %w", container, err)
		}
		for _, b := range page.Segment.BlobItems {
			var n int64
			if b.Properties != nil && b.Properties.ContentLength != nil {
				n = *b.Properties.ContentLength
			}
			out[*b.Name] = n
		}
	}
	return out, nil
}

// StorageYAML is the registry's azure storage driver section for container
// on this server, with the layout at rootdirectory (as a --target-config
// file's storage: section, indented under it).
func (s *Server) StorageYAML(container, rootdirectory string) string {
	return fmt.Sprintf(`azure:
  accountname: %s
  accountkey: %s
  container: %s
  serviceurl: %s
  rootdirectory: %s
  credentials:
    type: shared_key
`, AccountName, AccountKey, container, s.ServiceURL, rootdirectory)
}

// ForTest starts Azurite's blob service for one test with a fresh
// container, stopped when the test ends, or skips the test when Azurite is
// not installed (scripts/setup-azurite).
func ForTest(t testing.TB, container string) *Server {
	t.Helper()
	bin, err := Find()
	if errors.Is(err, ErrNotInstalled) {
		t.Skipf("skipping the Azure test: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	a, err := Start(ctx, bin, filepath.Join(t.TempDir(), "data"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	if err := a.CreateContainer(ctx, container); err != nil {
		t.Fatal(err)
	}
	return a
}

// Through returns the server as seen through a reverse proxy, for the
// test, that calls see with every request before forwarding it (see may
// read the body if it puts it back): how tests count what a client sends.
// Shared-key signatures do not cover the host, so the copy's clients work
// as the server's do.
func (s *Server) Through(t testing.TB, see func(*http.Request)) *Server {
	t.Helper()
	up, err := url.Parse(s.ServiceURL)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: up.Scheme, Host: up.Host})
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		see(r)
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(proxy.Close)
	via := *s
	via.ServiceURL = proxy.URL + up.Path
	return &via
}
