package client

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"", -1},
		{"3", 3 * time.Second},
		{"junk", -1},
		{now.Add(5 * time.Second).Format(http.TimeFormat), 5 * time.Second},
		{now.Add(-5 * time.Second).Format(http.TimeFormat), 0},
	} {
		if got := retryAfter(tc.in, now); got != tc.want {
			t.Errorf("retryAfter(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestRetryHonoursRetryAfter(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 2 {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()

	rt := Options{Transport: http.DefaultTransport}.RoundTripper()
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, srv.URL, nil)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || calls.Load() != 3 {
		t.Fatalf("status %d after %d calls, want 200 after 3", resp.StatusCode, calls.Load())
	}
}

// The waits between tries are what the registry asked for (seconds or an
// HTTP date, capped at a minute), else an exponential backoff from 0.5 s.
// The transport's sleep records them instead of waiting.
func TestRetryWaits(t *testing.T) {
	for _, tc := range []struct {
		name    string
		headers []string // Retry-After of each refusal ("" none)
		want    []time.Duration
	}{
		{"seconds", []string{"7", "2"}, []time.Duration{7 * time.Second, 2 * time.Second}},
		{"none: backoff", []string{"", "", ""}, []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second}},
		{"capped", []string{"3600"}, []time.Duration{maxRetryWait}},
		{"junk: backoff", []string{"soon"}, []time.Duration{500 * time.Millisecond}},
		{"http date", []string{time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)}, []time.Duration{maxRetryWait}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := int(calls.Add(1))
				if n <= len(tc.headers) {
					if h := tc.headers[n-1]; h != "" {
						w.Header().Set("Retry-After", h)
					}
					w.WriteHeader(http.StatusTooManyRequests)
					return
				}
				w.WriteHeader(http.StatusOK)
			}))
			defer srv.Close()
			var waits []time.Duration
			rt := &retryTransport{inner: http.DefaultTransport, max: 4, sleep: func(_ context.Context, d time.Duration) error {
				waits = append(waits, d)
				return nil
			}}
			req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
			resp, err := rt.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if diff := cmp.Diff(tc.want, waits); diff != "" {
				t.Errorf("waits (-want +got):\n%s", diff)
			}
		})
	}
}

// A wait is cut short by the request's context: the run stops, it does
// not sit out a long Retry-After.
func TestRetryWaitCancelled(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "30")
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	rt := &retryTransport{inner: http.DefaultTransport, max: 4, sleep: func(ctx context.Context, d time.Duration) error {
		cancel()
		return sleepCtx(ctx, d)
	}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	if _, err := rt.RoundTrip(req); err != context.Canceled {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestRetryGivesUp(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Retry-After", "0")
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	rt := Options{Transport: http.DefaultTransport, MaxRetries: 2}.RoundTripper()
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || calls.Load() != 3 {
		t.Fatalf("status %d after %d calls, want 503 after 3", resp.StatusCode, calls.Load())
	}
}

func TestRegistry(t *testing.T) {
	for _, in := range []string{"registry.example.com", "127.0.0.1:5000", "http://127.0.0.1:5000/"} {
		if _, err := (Options{}).Registry(in); err != nil {
			t.Errorf("Registry(%q): %v", in, err)
		}
	}
	for _, in := range []string{"", "reg.example.com/team", "user@host"} {
		if _, err := (Options{}).Registry(in); err == nil {
			t.Errorf("Registry(%q) accepted", in)
		}
	}
}

// A 500 is retried once, not as many times as a 503: it is often lasting.
func TestRetry500Once(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer srv.Close()
	rt := Options{Transport: http.DefaultTransport}.RoundTripper()
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, srv.URL, nil)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError || calls.Load() != 2 {
		t.Errorf("status %d after %d calls, want 500 after 2", resp.StatusCode, calls.Load())
	}
}
