package usage

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	bolt "go.etcd.io/bbolt"
)

// OwnUserAgent is the product token of regkeeper's own requests
// (internal/client.UserAgent: "regkeeper/<version>"); they are never pulls.
const OwnUserAgent = "regkeeper/"

// Ignore says whose requests are not pulls: regkeeper's own always, and
// the user agents (case-insensitive substrings, e.g. "trivy") and accounts
// (the registry's actor name, exact) listed here. They are counted as
// "ignored".
type Ignore struct {
	UserAgents []string `json:"ignoreUserAgents"`
	Accounts   []string `json:"ignoreAccounts"`
}

// Config is the file given to --config (YAML or JSON).
type Config struct {
	Ignore     `json:",inline"`
	WindowDays int `json:"windowDays"`
}

// LoadConfig reads a config file; an empty path is the zero Config.
func LoadConfig(path string) (Config, error) {
	var c Config
	if path == "" {
		return c, nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("reading usage config: %w", err)
	}
	if err := yaml.UnmarshalStrict(raw, &c); err != nil {
		return c, fmt.Errorf("parsing usage config %s: %w", path, err)
	}
	return c, nil
}

// ignored says whether a request by this user agent and account is not a pull.
func (ig Ignore) ignored(ua, account string) bool {
	lua := strings.ToLower(ua)
	if strings.HasPrefix(lua, OwnUserAgent) || strings.Contains(lua, " "+OwnUserAgent) {
		return true
	}
	for _, s := range ig.UserAgents {
		if s != "" && strings.Contains(lua, strings.ToLower(s)) {
			return true
		}
	}
	for _, a := range ig.Accounts {
		if a != "" && a == account {
			return true
		}
	}
	return false
}

// Result is what Record did with an envelope's events.
type Result struct {
	// Stored pulls, HEADs and pushes of manifests.
	Stored int `json:"stored"`
	// Duplicates: events whose id the ledger had seen.
	Duplicates int `json:"duplicates"`
	// Ignored: requests by regkeeper or the configured user agents/accounts.
	Ignored int `json:"ignored"`
	// Skipped: events the ledger does not keep (blobs, mounts).
	Skipped int `json:"skipped"`
	// Unlinked: indexes pulled whose children the ledger does not know
	// (it did not see them pushed), which a caller may read from the
	// registry and give to LearnIndex.
	Unlinked []Manifest `json:"-"`
}

// Manifest names a manifest in a repository.
type Manifest struct{ Repo, Digest string }

func (r *Result) add(o Result) {
	r.Stored += o.Stored
	r.Duplicates += o.Duplicates
	r.Ignored += o.Ignored
	r.Skipped += o.Skipped
	r.Unlinked = append(r.Unlinked, o.Unlinked...)
}

// Record stores the events of one envelope in one transaction: when it
// returns nil, every event is durably stored (or was a duplicate), and the
// envelope may be acknowledged; on error nothing of it is stored.
func (l *Ledger) Record(ctx context.Context, env *Envelope) (Result, error) {
	return l.record(ctx, env, true)
}

// record stores env; live says the events were received now (notifications),
// which moves the ledger's freshness, rather than read from a log.
func (l *Ledger) record(ctx context.Context, env *Envelope, live bool) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	if l.readOnly {
		return Result{}, fmt.Errorf("recording events: ledger %s is open read-only", l.path)
	}
	var res Result
	now := l.opts.now()
	err := l.db.Update(func(tx *bolt.Tx) error {
		res = Result{}
		seen, byTime := tx.Bucket(bSeen), tx.Bucket(bSeenByTime)
		for i := range env.Events {
			ev := &env.Events[i]
			id := []byte(ev.ID)
			if seen.Get(id) != nil {
				res.Duplicates++
				continue
			}
			if err := seen.Put(id, timeKey(now)); err != nil {
				return err
			}
			if err := byTime.Put(append(timeKey(now), id...), nil); err != nil {
				return err
			}
			r, err := l.apply(tx, ev)
			if err != nil {
				return fmt.Errorf("recording event %s: %w", ev.ID, err)
			}
			res.add(r)
		}
		if err := l.pruneSeen(tx, now); err != nil {
			return err
		}
		if !live {
			return nil
		}
		if err := tx.Bucket(bMeta).Put([]byte("lastEvent"), []byte(now.UTC().Format(time.RFC3339Nano))); err != nil {
			return err
		}
		return l.beat(tx, now)
	})
	if err != nil {
		return Result{}, fmt.Errorf("storing envelope in ledger %s: %w", l.path, err)
	}
	return res, nil
}

// pruneSeen drops event ids older than the TTL, a bounded number per call.
func (l *Ledger) pruneSeen(tx *bolt.Tx, now time.Time) error {
	seen, byTime := tx.Bucket(bSeen), tx.Bucket(bSeenByTime)
	limit := timeKey(now.Add(-l.opts.seenTTL))
	c := byTime.Cursor()
	n := 0
	for k, _ := c.First(); k != nil && n < 100 && string(k[:8]) < string(limit); k, _ = c.First() {
		if err := seen.Delete(k[8:]); err != nil {
			return err
		}
		if err := c.Delete(); err != nil {
			return err
		}
		n++
	}
	return nil
}

// client identifies who made a request, to tell the fetches of one pull.
func clientOf(ev *Event) string {
	host := ev.Request.Addr
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return host + " " + ev.Request.UserAgent + " " + ev.Actor.Name
}

// apply stores one event in tx.
func (l *Ledger) apply(tx *bolt.Tx, ev *Event) (Result, error) {
	var res Result
	if !ev.isManifest() || ev.Target.Digest == "" && ev.Target.Tag == "" {
		res.Skipped++
		return res, nil
	}
	tags, digests := tx.Bucket(bTags), tx.Bucket(bDigests)
	repo, at := ev.Target.Repository, ev.Timestamp.UTC()
	switch ev.Action {
	case "pull":
		head := strings.EqualFold(ev.Request.Method, "HEAD")
		ign := l.opts.ignore.ignored(ev.Request.UserAgent, ev.Actor.Name)
		count := func(c *Counts) {
			switch {
			case ign:
				c.Ignored++
			case head:
				c.Heads++
				c.LastHead = maxTime(c.LastHead, at)
			default:
				c.Pulls++
				c.LastPull = maxTime(c.LastPull, at)
				c.addDay(at, l.opts.window)
			}
		}
		if ign {
			res.Ignored++
		} else {
			res.Stored++
		}
		d, err := get[digestRecord](digests, key(repo, ev.Target.Digest))
		if err != nil {
			return res, err
		}
		if ev.Target.MediaType != "" {
			d.MediaType = ev.Target.MediaType
		}
		if ev.Target.Tag != "" {
			t, err := get[tagRecord](tags, key(repo, ev.Target.Tag))
			if err != nil {
				return res, err
			}
			count(&t.Counts)
			if ev.Target.Digest != "" {
				t.Digest = ev.Target.Digest
				t.Deleted = time.Time{}
			}
			if err := put(tags, key(repo, ev.Target.Tag), t); err != nil {
				return res, err
			}
		} else {
			count(&d.Counts)
		}
		if !ign && !head {
			d.FetchedBy, d.FetchedAt = clientOf(ev), at
			if isIndexType(d.MediaType) && len(d.Children) == 0 && ev.Target.Digest != "" {
				res.Unlinked = append(res.Unlinked, Manifest{repo, ev.Target.Digest})
			}
			// credit the indexes this manifest is a child of
			for _, p := range d.Parents {
				pr, err := get[digestRecord](digests, key(repo, p))
				if err != nil {
					return res, err
				}
				pr.LastPull = maxTime(pr.LastPull, at)
				if !(pr.FetchedBy == clientOf(ev) && !at.Before(pr.FetchedAt) && at.Sub(pr.FetchedAt) <= sameClient) {
					pr.Pulls++
					pr.addDay(at, l.opts.window)
				}
				if err := put(digests, key(repo, p), pr); err != nil {
					return res, err
				}
			}
		}
		if ev.Target.Digest != "" {
			if err := put(digests, key(repo, ev.Target.Digest), d); err != nil {
				return res, err
			}
		}
	case "push":
		res.Stored++
		if ev.Target.Digest == "" {
			return res, nil
		}
		d, err := get[digestRecord](digests, key(repo, ev.Target.Digest))
		if err != nil {
			return res, err
		}
		d.LastPush = maxTime(d.LastPush, at)
		d.MediaType = ev.Target.MediaType
		for _, ref := range ev.Target.References {
			if !manifestMediaTypes[ref.MediaType] {
				continue
			}
			if err := link(digests, repo, ev.Target.Digest, ref.Digest, d); err != nil {
				return res, err
			}
		}
		if err := put(digests, key(repo, ev.Target.Digest), d); err != nil {
			return res, err
		}
		if ev.Target.Tag != "" {
			t, err := get[tagRecord](tags, key(repo, ev.Target.Tag))
			if err != nil {
				return res, err
			}
			t.Digest, t.Deleted = ev.Target.Digest, time.Time{}
			t.LastPush = maxTime(t.LastPush, at)
			if err := put(tags, key(repo, ev.Target.Tag), t); err != nil {
				return res, err
			}
		}
	case "delete":
		res.Stored++
		if ev.Target.Tag != "" {
			t, err := get[tagRecord](tags, key(repo, ev.Target.Tag))
			if err != nil {
				return res, err
			}
			t.Deleted, t.Digest = at, ""
			if err := put(tags, key(repo, ev.Target.Tag), t); err != nil {
				return res, err
			}
		}
	default:
		res.Skipped++
	}
	return res, nil
}

// link records that index lists child: child's parents gain index and
// idx (the index's record, stored by the caller) gains child.
func link(digests *bolt.Bucket, repo, index, child string, idx *digestRecord) error {
	idx.Children = addUnique(idx.Children, child)
	c, err := get[digestRecord](digests, key(repo, child))
	if err != nil {
		return err
	}
	c.Parents = addUnique(c.Parents, index)
	return put(digests, key(repo, child), c)
}

// LearnIndex records that the index repo@index lists children (read from
// the registry by the caller). Pulls already counted on the children are
// not re-credited.
func (l *Ledger) LearnIndex(ctx context.Context, repo, index, mediaType string, children []string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := l.db.Update(func(tx *bolt.Tx) error {
		digests := tx.Bucket(bDigests)
		d, err := get[digestRecord](digests, key(repo, index))
		if err != nil {
			return err
		}
		d.MediaType = mediaType
		for _, c := range children {
			if err := link(digests, repo, index, c, d); err != nil {
				return err
			}
		}
		return put(digests, key(repo, index), d)
	})
	if err != nil {
		return fmt.Errorf("recording index %s@%s in ledger: %w", repo, index, err)
	}
	return nil
}
