package usage

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ImportResult is what Import did with a log.
type ImportResult struct {
	File string `json:"file"`
	// Lines read; Requests the manifest GETs and HEADs among them that
	// succeeded (2xx); Recorded those stored (ignored agents included).
	Lines    int `json:"lines"`
	Requests int `json:"requests"`
	Result
	// Covered: requests in periods the ledger already covers (listening or
	// an earlier import), not counted again.
	Covered int `json:"covered"`
	// Unparsed lines that are neither format (other log lines).
	Unparsed int `json:"unparsed"`
	// From and To are the times of the first and last line read; the
	// period becomes covered.
	From time.Time `json:"from,omitzero"`
	To   time.Time `json:"to,omitzero"`
}

// logLine is one request read from an access log.
type logLine struct {
	at                   time.Time
	method, uri, ua, who string
	addr                 string
	status               int
}

// combined: host ident user [time] "METHOD URI PROTO" status size "referer" "agent"
var combinedRE = regexp.MustCompile(`^(\S+) \S+ (\S+) \[([^\]]+)\] "(\S+) (\S+)[^"]*" (\d{3}) \S+(?: "[^"]*" "([^"]*)")?`)

// logfmt key=value or key="quoted value"
var logfmtRE = regexp.MustCompile(`([\w.]+)=("(?:[^"\\]|\\.)*"|\S*)`)

// parseLine reads a line of gorilla's combined log format (what `registry
// serve` writes to stdout, and nginx/Apache), of the registry's own
// "response completed" log (logrus text or JSON), or returns ok false.
func parseLine(line string) (logLine, bool) {
	if m := combinedRE.FindStringSubmatch(line); m != nil {
		at, err := time.Parse("02/Jan/2006:15:04:05 -0700", m[3])
		if err != nil {
			return logLine{}, false
		}
		st, _ := strconv.Atoi(m[6])
		who := m[2]
		if who == "-" {
			who = ""
		}
		return logLine{at: at, addr: m[1], who: who, method: m[4], uri: m[5], status: st, ua: m[7]}, true
	}
	fields := map[string]string{}
	if strings.HasPrefix(strings.TrimSpace(line), "{") {
		var raw map[string]any
		if json.Unmarshal([]byte(line), &raw) != nil {
			return logLine{}, false
		}
		for k, v := range raw {
			fields[k] = fmt.Sprint(v)
		}
	} else {
		for _, m := range logfmtRE.FindAllStringSubmatch(line, -1) {
			v := m[2]
			if uq, err := strconv.Unquote(v); err == nil {
				v = uq
			}
			fields[m[1]] = v
		}
	}
	if fields["msg"] != "response completed" || fields["http.request.uri"] == "" {
		return logLine{}, false
	}
	at, err := time.Parse(time.RFC3339Nano, fields["time"])
	if err != nil {
		return logLine{}, false
	}
	st, _ := strconv.Atoi(strings.TrimSuffix(fields["http.response.status"], ".0"))
	return logLine{at: at, method: fields["http.request.method"], uri: fields["http.request.uri"],
		ua: fields["http.request.useragent"], addr: fields["http.request.remoteaddr"], who: fields["auth.user.name"], status: st}, true
}

// manifestRequest splits /v2/<repo>/manifests/<ref>.
func manifestRequest(uri string) (repo, ref string, ok bool) {
	uri, _, _ = strings.Cut(uri, "?")
	rest, found := strings.CutPrefix(uri, "/v2/")
	if !found {
		return "", "", false
	}
	i := strings.LastIndex(rest, "/manifests/")
	if i <= 0 {
		return "", "", false
	}
	return rest[:i], rest[i+len("/manifests/"):], true
}

// Import backfills the ledger from an access log read from r (named file
// in messages and ids): every successful GET and HEAD of a manifest, by tag
// or by digest, is a pull or a HEAD as if the registry had notified it,
// except in periods the ledger already covers (so a log imported twice, or
// one overlapping the time serve listened, counts once). The period from
// the first to the last line becomes covered. A line's id is a hash of the
// file name and the line, so a duplicate line counts once.
func (l *Ledger) Import(ctx context.Context, file string, r io.Reader) (*ImportResult, error) {
	res := &ImportResult{File: file}
	r, err := gunzipped(r)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	var covered []Interval
	now := l.opts.now()
	if err := l.db.View(func(tx *bolt.Tx) error {
		ss, err := sessions(tx)
		covered, _ = coverage(ss, now)
		return err
	}); err != nil {
		return nil, fmt.Errorf("importing %s: %w", file, err)
	}
	var batch []Event
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		r, err := l.record(ctx, &Envelope{Events: batch}, false)
		if err != nil {
			return err
		}
		res.add(r)
		batch = batch[:0]
		return nil
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		res.Lines++
		ll, ok := parseLine(line)
		if !ok {
			res.Unparsed++
			continue
		}
		if res.From.IsZero() || ll.at.Before(res.From) {
			res.From = ll.at.UTC()
		}
		if ll.at.After(res.To) {
			res.To = ll.at.UTC()
		}
		repo, ref, ok := manifestRequest(ll.uri)
		if !ok || ll.status < 200 || ll.status > 299 || (ll.method != "GET" && ll.method != "HEAD") {
			continue
		}
		res.Requests++
		if isCovered(covered, ll.at, ll.at) {
			res.Covered++
			continue
		}
		sum := sha256.Sum256([]byte(file + "\n" + line))
		var ev Event
		ev.ID = "log-" + hex.EncodeToString(sum[:16])
		ev.Timestamp, ev.Action = ll.at, "pull"
		ev.Target.Repository = repo
		ev.Target.URL = ll.uri
		if strings.Contains(ref, ":") {
			ev.Target.Digest = ref
		} else {
			ev.Target.Tag = ref
		}
		ev.Request.Method, ev.Request.UserAgent, ev.Request.Addr = ll.method, ll.ua, ll.addr
		ev.Actor.Name = ll.who
		batch = append(batch, ev)
		if len(batch) >= 1000 {
			if err := flush(); err != nil {
				return res, fmt.Errorf("importing %s: %w", file, err)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return res, fmt.Errorf("reading %s: %w", file, err)
	}
	if err := flush(); err != nil {
		return res, fmt.Errorf("importing %s: %w", file, err)
	}
	if !res.From.IsZero() {
		if err := l.db.Update(func(tx *bolt.Tx) error { return l.addCoverage(tx, "import "+file, res.From, res.To) }); err != nil {
			return res, fmt.Errorf("recording the period of %s: %w", file, err)
		}
	}
	return res, nil
}

// gunzipped returns r itself, or its decompressed content when it starts
// with gzip's magic bytes (a rotated log, access.log.2.gz; concatenated
// members are read as one stream, as zcat does).
func gunzipped(r io.Reader) (io.Reader, error) {
	br := bufio.NewReader(r)
	magic, err := br.Peek(2)
	if err != nil || magic[0] != 0x1f || magic[1] != 0x8b {
		return br, nil // shorter than two bytes: not gzip; read as it is
	}
	return gzip.NewReader(br)
}
