package usage

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// DefaultMaxBody is the largest envelope usage serve reads (1 MiB; the
// registry sends one event, a few kilobytes, per envelope).
const DefaultMaxBody = 1 << 20

// IndexReader reads the children of an index from the registry, for the
// indexes the ledger did not see pushed. It returns the index's media type
// and its children's digests.
type IndexReader func(ctx context.Context, repo, digest string) (mediaType string, children []string, err error)

// ServeOptions configure Serve.
type ServeOptions struct {
	// Listen is the address (default 127.0.0.1:5050).
	Listen string
	// Listener, when set, is used instead of Listen (tests).
	Listener net.Listener
	// Token, when set, is required as "Authorization: Bearer TOKEN" on
	// every request but /healthz and /metrics.
	Token string
	// MaxBody bounds an envelope (default DefaultMaxBody).
	MaxBody int64
	// Every is the heartbeat and snapshot period (default 30s).
	Every time.Duration
	// Indexes, when set, reads the children of indexes pulled before the
	// ledger saw them pushed.
	Indexes IndexReader
	Logger  *slog.Logger
	// Ready, when set, is called with the address once listening.
	Ready func(addr string)
}

// Server is the HTTP side of usage serve, over an open ledger.
type Server struct {
	l    *Ledger
	opts ServeOptions
	log  *slog.Logger
	mu   sync.Mutex // one envelope at a time, so a duplicate waits for its twin

	reg                                       *prometheus.Registry
	received, stored, dups, ignoredN, skipped prometheus.Counter
	rejected                                  *prometheus.CounterVec
	lastEvent, size                           prometheus.Gauge
	requests                                  prometheus.Counter
}

// NewServer returns the handler of usage serve over l.
func NewServer(l *Ledger, opts ServeOptions) *Server {
	if opts.MaxBody <= 0 {
		opts.MaxBody = DefaultMaxBody
	}
	if opts.Every <= 0 {
		opts.Every = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{l: l, opts: opts, log: opts.Logger, reg: prometheus.NewRegistry()}
	c := func(name, help string) prometheus.Counter {
		m := prometheus.NewCounter(prometheus.CounterOpts{Name: "regkeeper_usage_" + name, Help: help})
		s.reg.MustRegister(m)
		return m
	}
	s.requests = c("envelopes_received_total", "Envelopes (POST /events) received.")
	s.received = c("events_received_total", "Events in the envelopes accepted.")
	s.stored = c("events_stored_total", "Pulls, HEADs, pushes and deletes of manifests stored.")
	s.dups = c("events_duplicate_total", "Events already stored (same id), counted once.")
	s.ignoredN = c("events_ignored_total", "Requests by regkeeper or the configured user agents and accounts, not counted as pulls.")
	s.skipped = c("events_skipped_total", "Events the ledger does not keep (blobs, mounts).")
	s.rejected = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "regkeeper_usage_envelopes_rejected_total", Help: "Envelopes rejected, by reason: unauthorized, too_large, malformed, media_type, method, store."}, []string{"reason"})
	s.reg.MustRegister(s.rejected)
	for _, r := range []string{"unauthorized", "too_large", "malformed", "media_type", "method", "store"} {
		s.rejected.WithLabelValues(r)
	}
	s.lastEvent = prometheus.NewGauge(prometheus.GaugeOpts{Name: "regkeeper_usage_last_event_timestamp_seconds", Help: "Unix time of the last envelope stored."})
	s.size = prometheus.NewGauge(prometheus.GaugeOpts{Name: "regkeeper_usage_store_size_bytes", Help: "Size of the ledger file."})
	s.reg.MustRegister(s.lastEvent, s.size)
	s.size.Set(float64(l.Size()))
	if ev, _, err := l.Freshness(); err == nil && !ev.IsZero() {
		s.lastEvent.Set(float64(ev.Unix()))
	}
	return s
}

// Handler routes POST /events, POST /inuse, GET /usage, GET /healthz and
// GET /metrics.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/events", s.events)
	mux.HandleFunc("/usage", s.usage)
	mux.HandleFunc("/inuse", s.inuse)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.Handle("/metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	return mux
}

func (s *Server) authorized(r *http.Request) bool {
	if s.opts.Token == "" {
		return true
	}
	got := r.Header.Get("Authorization")
	want := "Bearer " + s.opts.Token
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

func (s *Server) reject(w http.ResponseWriter, r *http.Request, status int, reason string, err error) {
	s.rejected.WithLabelValues(reason).Inc()
	s.log.Warn("envelope rejected", "reason", reason, "status", status, "remote", r.RemoteAddr, "error", err)
	http.Error(w, fmt.Sprintf("%s: %v", reason, err), status)
}

func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	s.requests.Inc()
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		s.reject(w, r, http.StatusMethodNotAllowed, "method", fmt.Errorf("%s, want POST", r.Method))
		return
	}
	if !s.authorized(r) {
		s.reject(w, r, http.StatusUnauthorized, "unauthorized", errors.New("missing or wrong bearer token"))
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || (mt != MediaType && mt != "application/json") {
		s.reject(w, r, http.StatusUnsupportedMediaType, "media_type", fmt.Errorf("content type %q, want %s", r.Header.Get("Content-Type"), MediaType))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.reject(w, r, http.StatusRequestEntityTooLarge, "too_large", fmt.Errorf("body over %d bytes", s.opts.MaxBody))
			return
		}
		s.reject(w, r, http.StatusBadRequest, "malformed", fmt.Errorf("reading body: %w", err))
		return
	}
	env, err := DecodeEnvelope(body)
	if err != nil {
		s.reject(w, r, http.StatusBadRequest, "malformed", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	res, err := s.l.Record(r.Context(), env)
	if err != nil {
		// 5xx: the registry retries, nothing was stored
		s.reject(w, r, http.StatusServiceUnavailable, "store", err)
		return
	}
	for _, m := range res.Unlinked {
		if s.opts.Indexes == nil {
			break
		}
		mt, children, err := s.opts.Indexes(r.Context(), m.Repo, m.Digest)
		if err == nil {
			err = s.l.LearnIndex(r.Context(), m.Repo, m.Digest, mt, children)
		}
		if err != nil {
			s.log.Warn("could not learn the children of an index; pulls of its children by digest will not be credited to it", "repo", m.Repo, "digest", m.Digest, "error", err)
		}
	}
	s.received.Add(float64(len(env.Events)))
	s.stored.Add(float64(res.Stored))
	s.dups.Add(float64(res.Duplicates))
	s.ignoredN.Add(float64(res.Ignored))
	s.skipped.Add(float64(res.Skipped))
	s.lastEvent.Set(float64(time.Now().Unix()))
	s.size.Set(float64(s.l.Size()))
	s.log.Debug("envelope stored", "events", len(env.Events), "stored", res.Stored, "duplicates", res.Duplicates, "ignored", res.Ignored)
	w.WriteHeader(http.StatusOK)
}

// MaxSnapshot bounds an in-use snapshot posted to /inuse (64 MiB).
const MaxSnapshot = 64 << 20

// inuse stores a Snapshot posted by usage kube --server: the ledger file is
// serve's while it runs, so other writers go through it.
func (s *Server) inuse(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		s.reject(w, r, http.StatusMethodNotAllowed, "method", fmt.Errorf("%s, want POST", r.Method))
		return
	}
	if !s.authorized(r) {
		s.reject(w, r, http.StatusUnauthorized, "unauthorized", errors.New("missing or wrong bearer token"))
		return
	}
	var snap Snapshot
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxSnapshot))
	if err := dec.Decode(&snap); err != nil || snap.Source == "" || snap.At.IsZero() {
		if err == nil {
			err = errors.New("snapshot without source or time")
		}
		s.reject(w, r, http.StatusBadRequest, "malformed", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.l.RecordInUse(r.Context(), snap); err != nil {
		s.reject(w, r, http.StatusServiceUnavailable, "store", err)
		return
	}
	s.log.Info("in-use snapshot stored", "source", snap.Source, "images", len(snap.Images))
	w.WriteHeader(http.StatusOK)
}

// PostSnapshot sends snap to a running usage serve at url (its /inuse).
func PostSnapshot(ctx context.Context, url, token string, snap Snapshot) error {
	raw, err := json.Marshal(snap)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(url, "/")+"/inuse", strings.NewReader(string(raw)))
	if err != nil {
		return fmt.Errorf("posting in-use snapshot of %s: %w", snap.Source, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 2 * time.Minute}).Do(req)
	if err != nil {
		return fmt.Errorf("posting in-use snapshot of %s: %w", snap.Source, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("posting in-use snapshot of %s to %s: %s: %s", snap.Source, url, resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}

// usage answers GET /usage?repo=R&tag=T[&digest=D] with a TagUsage, and
// GET /usage (no repo) with the Summary: readers that can reach serve need
// no snapshot.
func (s *Server) usage(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r) {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	q := r.URL.Query()
	var v any
	var err error
	if q.Get("repo") == "" {
		v, err = s.l.Summarize(r.Context())
	} else {
		v, err = s.l.Usage(q.Get("repo"), q.Get("tag"), q.Get("digest"))
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// Serve runs usage serve until ctx ends: records a listening session,
// heartbeats and writes the reader snapshot every opts.Every, serves HTTP
// with timeouts, and on ctx's end shuts down gracefully (in-flight
// envelopes finish) and records the stop.
func Serve(ctx context.Context, l *Ledger, opts ServeOptions) error {
	s := NewServer(l, opts)
	opts = s.opts
	ln := opts.Listener
	if ln == nil {
		addr := opts.Listen
		if addr == "" {
			addr = "127.0.0.1:5050"
		}
		var err error
		if ln, err = net.Listen("tcp", addr); err != nil {
			return fmt.Errorf("listening on %s: %w", addr, err)
		}
	}
	if err := l.StartListening("serve", opts.Every); err != nil {
		ln.Close()
		return err
	}
	snap := SnapshotPath(l.Path())
	if err := l.WriteSnapshot(snap); err != nil {
		s.log.Warn("could not write the reader snapshot", "error", err)
	}
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.log.Info("usage serve listening", "addr", ln.Addr().String(), "db", l.Path())
	if opts.Ready != nil {
		opts.Ready(ln.Addr().String())
	}
	tick := time.NewTicker(opts.Every)
	defer tick.Stop()
	var serveErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-errc:
			serveErr = fmt.Errorf("serving: %w", err)
			break loop
		case <-tick.C:
			s.mu.Lock()
			if err := l.Heartbeat(); err != nil {
				s.log.Warn("heartbeat", "error", err)
			}
			if err := l.WriteSnapshot(snap); err != nil {
				s.log.Warn("could not write the reader snapshot", "error", err)
			}
			s.size.Set(float64(l.Size()))
			s.mu.Unlock()
		}
	}
	shut, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shut); err != nil && serveErr == nil {
		serveErr = fmt.Errorf("shutting down: %w", err)
	}
	if err := l.StopListening(); err != nil && serveErr == nil {
		serveErr = err
	}
	if err := l.WriteSnapshot(snap); err != nil {
		s.log.Warn("could not write the reader snapshot", "error", err)
	}
	if serveErr != nil && !strings.Contains(serveErr.Error(), http.ErrServerClosed.Error()) {
		return serveErr
	}
	return nil
}
