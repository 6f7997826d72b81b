// Package client is the one place that builds go-containerregistry options
// for talking to a registry: credentials from the Docker config (with
// credential helpers), --insecure, the user agent, retries that honour
// Retry-After, and concurrency.
package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Version is the regkeeper version reported in the user agent; main sets it.
var Version = "dev"

// DefaultJobs is the default concurrency for registry requests: enough to hide
// the latency of a registry on the other side of a network, low enough not to
// be rate-limited by it.
const DefaultJobs = 8

// Options describes how to reach a registry. The zero value is usable:
// anonymous-or-Docker-config credentials, verified TLS, DefaultJobs.
type Options struct {
	// Insecure allows plain HTTP and unverified TLS.
	Insecure bool
	// Jobs is the number of concurrent requests; 0 means DefaultJobs.
	Jobs int
	// Keychain resolves credentials; nil means authn.DefaultKeychain, which
	// reads DOCKER_CONFIG / ~/.docker/config.json and credential helpers.
	Keychain authn.Keychain
	// Transport is the base round tripper; nil means a tuned clone of
	// http.DefaultTransport.
	Transport http.RoundTripper
	// MaxRetries on 429 and 5xx answers; 0 means 4. Negative disables.
	MaxRetries int
	// Logger receives retry notices; nil discards them.
	Logger *slog.Logger
}

// JobCount returns the effective concurrency.
func (o Options) JobCount() int {
	if o.Jobs > 0 {
		return o.Jobs
	}
	return DefaultJobs
}

// NameOptions returns the options for parsing references on this registry.
func (o Options) NameOptions() []name.Option {
	if o.Insecure {
		return []name.Option{name.Insecure}
	}
	return nil
}

// Registry parses a registry host ("registry.example.com", "127.0.0.1:5000").
// A scheme prefix is accepted and stripped: "http://host" implies Insecure is
// needed, which the caller must still ask for.
func (o Options) Registry(host string) (name.Registry, error) {
	host = strings.TrimSuffix(host, "/")
	host = strings.TrimPrefix(strings.TrimPrefix(host, "https://"), "http://")
	if host == "" || strings.ContainsAny(host, "/@ ") {
		return name.Registry{}, fmt.Errorf("invalid registry %q: want a host such as registry.example.com or 127.0.0.1:5000", host)
	}
	reg, err := name.NewRegistry(host, append(o.NameOptions(), name.StrictValidation)...)
	if err != nil {
		return name.Registry{}, fmt.Errorf("invalid registry %q: %w", host, err)
	}
	return reg, nil
}

// Remote returns the go-containerregistry options for requests made under ctx.
func (o Options) Remote(ctx context.Context) []remote.Option {
	kc := o.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(kc),
		remote.WithTransport(o.RoundTripper()),
		remote.WithUserAgent(UserAgent()),
		remote.WithJobs(o.JobCount()),
		// Status retries happen in our transport, which honours Retry-After;
		// ggcr keeps retrying temporary network errors.
		remote.WithRetryStatusCodes(),
	}
}

// UserAgent is the product token sent to registries.
func UserAgent() string { return "regkeeper/" + Version }

// RoundTripper returns the base transport wrapped with Retry-After-aware
// retries. It is what Remote uses; callers making their own requests (for
// example with transport.NewWithContext) should use it too.
func (o Options) RoundTripper() http.RoundTripper {
	base := o.Transport
	if base == nil {
		t := remote.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = max(o.JobCount()*2, 16)
		t.DialContext = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
		if o.Insecure {
			t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // --insecure asks for this
		}
		base = t
	}
	retries := o.MaxRetries
	if retries == 0 {
		retries = 4
	}
	if retries < 0 {
		return base
	}
	return &retryTransport{inner: base, max: retries, log: o.Logger}
}

// retryTransport retries idempotent-safe requests on 429 and 5xx answers,
// waiting as long as Retry-After says (capped), else backing off
// exponentially. Requests with a body that cannot be replayed are not
// retried.
type retryTransport struct {
	inner http.RoundTripper
	max   int
	log   *slog.Logger
	// sleep waits d or until ctx is done (sleepCtx; tests record the
	// waits instead).
	sleep func(ctx context.Context, d time.Duration) error
}

// sleepCtx waits d, or returns ctx's error when it is done first.
func sleepCtx(ctx context.Context, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

const maxRetryWait = 60 * time.Second

func retryable(code int) bool {
	switch code {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable,
		http.StatusGatewayTimeout, http.StatusInternalServerError, http.StatusRequestTimeout:
		return true
	}
	return false
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	backoff := 500 * time.Millisecond
	for attempt := 0; ; attempt++ {
		r := req
		if attempt > 0 && req.Body != nil && req.Body != http.NoBody {
			body, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			r = req.Clone(req.Context())
			r.Body = body
		}
		resp, err := t.inner.RoundTrip(r)
		if err != nil || !retryable(resp.StatusCode) || attempt >= t.max {
			return resp, err
		}
		// A 500 is as often a lasting fault (distribution answers it for a
		// corrupt manifest on disk) as a passing one: one more try only.
		if resp.StatusCode == http.StatusInternalServerError && attempt >= 1 {
			return resp, nil
		}
		if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
			return resp, nil
		}
		wait := retryAfter(resp.Header.Get("Retry-After"), time.Now())
		if wait < 0 {
			wait = backoff
			backoff *= 2
		}
		wait = min(wait, maxRetryWait)
		if t.log != nil {
			t.log.Warn("registry asked to retry", "method", req.Method, "url", req.URL.Redacted(), "status", resp.StatusCode, "wait", wait)
		}
		resp.Body.Close()
		sleep := t.sleep
		if sleep == nil {
			sleep = sleepCtx
		}
		if err := sleep(req.Context(), wait); err != nil {
			return nil, err
		}
	}
}

// retryAfter parses a Retry-After header (seconds or an HTTP date). It
// returns -1 when there is none or it cannot be parsed.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return -1
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return -1
}

// Describe turns an error from go-containerregistry into one line that says
// what went wrong in the user's terms: unreachable, refused credentials, or
// the registry's own error text.
//
// A TLS failure is named first, even when the error also holds the answer
// to a plain-HTTP fallback (go-containerregistry tries http:// on loopback
// and private addresses after https:// fails, and an HTTPS server answers
// that with a 400 which would otherwise hide the certificate error).
func Describe(err error) string {
	if tlsErr := tlsCause(err); tlsErr != nil {
		return "TLS failure: " + tlsErr.Error() + " (to trust the registry's certificate, add its CA to the system's trust store or SSL_CERT_FILE; --insecure skips verification)"
	}
	var terr *transport.Error
	if errors.As(err, &terr) {
		switch terr.StatusCode {
		case http.StatusUnauthorized:
			return describeUnauthorized(terr)
		case http.StatusForbidden:
			if user, host := whoAt(terr); user != "" {
				return fmt.Sprintf("access denied to %s at %s: %s", user, host, errorText(terr))
			}
			return "access denied: " + errorText(terr)
		}
		return errorText(terr)
	}
	var nerr net.Error
	var oerr *net.OpError
	if errors.As(err, &oerr) || errors.As(err, &nerr) {
		return "registry unreachable: " + err.Error()
	}
	return err.Error()
}

// describeUnauthorized tells a wrong password from missing credentials, by
// what the refused request carried: basic credentials (htpasswd, or a
// token server that refused them) name their user; none is "no
// credentials"; a bearer token the registry refused is said as such.
func describeUnauthorized(terr *transport.Error) string {
	user, host := whoAt(terr)
	switch {
	case user != "":
		return fmt.Sprintf("authentication failed for %s at %s: wrong user name or password (%s)", user, host, errorText(terr))
	case terr.Request != nil && strings.HasPrefix(terr.Request.Header.Get("Authorization"), "Bearer "):
		return fmt.Sprintf("authentication failed at %s: the registry refused the token its token server issued (%s)", host, errorText(terr))
	}
	return fmt.Sprintf("no credentials for %s (docker login %s, or a credential helper in the Docker config): %s", host, host, errorText(terr))
}

// whoAt returns the user name of the basic credentials a failed request
// carried (empty when none) and the host it went to.
func whoAt(terr *transport.Error) (user, host string) {
	if terr.Request == nil || terr.Request.URL == nil {
		return "", "the registry"
	}
	user, _, _ = terr.Request.BasicAuth()
	return user, terr.Request.URL.Host
}

// errorText is a registry's error in one line: the request, and each error
// code with its message; a detail is kept only when it is text (the
// registry's details are often structures, which Go would print as a map
// dump: [map[Action:* Class: Name:catalog Type:registry]]).
func errorText(terr *transport.Error) string {
	if len(terr.Errors) == 0 {
		return terr.Error()
	}
	var parts []string
	for _, d := range terr.Errors {
		msg := string(d.Code)
		if d.Message != "" {
			msg += ": " + d.Message
		}
		if detail, ok := d.Detail.(string); ok && detail != "" {
			msg += "; " + detail
		}
		parts = append(parts, msg)
	}
	text := strings.Join(parts, "; ")
	if r := terr.Request; r != nil && r.URL != nil {
		u := *r.URL
		u.RawQuery, u.User = "", nil
		text = r.Method + " " + u.String() + ": " + text
	}
	return text
}

// IsTLS reports whether err holds a TLS failure: an untrusted or invalid
// certificate, or a TLS handshake with a server that does not speak TLS.
func IsTLS(err error) bool { return tlsCause(err) != nil }

func tlsCause(err error) error {
	var verr *tls.CertificateVerificationError
	var uerr x509.UnknownAuthorityError
	var herr x509.HostnameError
	var cerr x509.CertificateInvalidError
	var rerr tls.RecordHeaderError
	var aerr tls.AlertError
	switch {
	case errors.As(err, &verr):
		return verr
	case errors.As(err, &uerr):
		return uerr
	case errors.As(err, &herr):
		return herr
	case errors.As(err, &cerr):
		return cerr
	case errors.As(err, &rerr):
		return rerr
	case errors.As(err, &aerr):
		return aerr
	}
	return nil
}

// Unauthorized reports whether err is a refusal of credentials.
func Unauthorized(err error) bool {
	var terr *transport.Error
	return errors.As(err, &terr) && (terr.StatusCode == http.StatusUnauthorized || terr.StatusCode == http.StatusForbidden)
}

// explained is an error whose text is Describe's and which still unwraps to
// the original, for errors.Is and errors.As.
type explained struct{ err error }

func (e explained) Error() string { return Describe(e.err) }
func (e explained) Unwrap() error { return e.err }

// Explain wraps err so that its message is Describe(err).
func Explain(err error) error {
	if err == nil {
		return nil
	}
	return explained{err}
}
