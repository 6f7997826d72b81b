package usage

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Session is a period the ledger was listening (usage serve) or an access
// log it imported covers. A session of serve that has no Stop and whose
// last heartbeat is older than twice its Interval ended at that heartbeat
// (the listener died).
type Session struct {
	Kind     string        `json:"kind"`
	Start    time.Time     `json:"start"`
	Last     time.Time     `json:"last"`
	Stop     time.Time     `json:"stop,omitzero"`
	Interval time.Duration `json:"interval,omitempty"`
}

// end is when the session stopped covering time, and whether it is live.
func (s Session) end(now time.Time) (time.Time, bool) {
	if !s.Stop.IsZero() {
		return s.Stop, false
	}
	if now.Sub(s.Last) <= 2*s.Interval+5*time.Second {
		return now, true
	}
	return s.Last, false
}

// Interval is a period of time [From, To].
type Interval struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

// StartListening records the start of a listening session; heartbeats
// (Heartbeat, and every Record) move its end, Close or StopListening ends
// it. interval is the promised heartbeat period (and snapshot period: the
// longest time a reader's view can lag).
func (l *Ledger) StartListening(kind string, interval time.Duration) error {
	now := l.opts.now().UTC()
	k := append(timeKey(now), kind...)
	err := l.db.Update(func(tx *bolt.Tx) error {
		// This process holds the file's lock, so no other listener is
		// live: a session left without a stop died at its last heartbeat.
		b := tx.Bucket(bSessions)
		var dead [][]byte
		if err := b.ForEach(func(k, v []byte) error {
			var s Session
			if err := json.Unmarshal(v, &s); err != nil {
				return err
			}
			if s.Stop.IsZero() {
				dead = append(dead, append([]byte(nil), k...))
			}
			return nil
		}); err != nil {
			return err
		}
		for _, dk := range dead {
			s, err := get[Session](b, dk)
			if err != nil {
				return err
			}
			s.Stop = s.Last
			if err := put(b, dk, s); err != nil {
				return err
			}
		}
		return put(b, k, Session{Kind: kind, Start: now, Last: now, Interval: interval})
	})
	if err != nil {
		return fmt.Errorf("recording the start of listening in ledger %s: %w", l.path, err)
	}
	l.session = k
	return nil
}

// Heartbeat records that the listener is still listening.
func (l *Ledger) Heartbeat() error {
	if err := l.db.Update(func(tx *bolt.Tx) error { return l.beat(tx, l.opts.now()) }); err != nil {
		return fmt.Errorf("recording a heartbeat in ledger %s: %w", l.path, err)
	}
	return nil
}

func (l *Ledger) beat(tx *bolt.Tx, now time.Time) error {
	if l.session == nil {
		return nil
	}
	b := tx.Bucket(bSessions)
	s, err := get[Session](b, l.session)
	if err != nil {
		return err
	}
	s.Last = now.UTC()
	return put(b, l.session, s)
}

// StopListening records the end of the listening session.
func (l *Ledger) StopListening() error {
	if l.session == nil {
		return nil
	}
	now := l.opts.now().UTC()
	err := l.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bSessions)
		s, err := get[Session](b, l.session)
		if err != nil {
			return err
		}
		s.Last, s.Stop = now, now
		return put(b, l.session, s)
	})
	l.session = nil
	if err != nil {
		return fmt.Errorf("recording the end of listening in ledger %s: %w", l.path, err)
	}
	return nil
}

func (l *Ledger) addCoverage(tx *bolt.Tx, kind string, from, to time.Time) error {
	k := append(timeKey(from.UTC()), kind...)
	return put(tx.Bucket(bSessions), k, Session{Kind: kind, Start: from.UTC(), Last: to.UTC(), Stop: to.UTC()})
}

func sessions(tx *bolt.Tx) ([]Session, error) {
	var out []Session
	err := tx.Bucket(bSessions).ForEach(func(k, v []byte) error {
		var s Session
		if err := json.Unmarshal(v, &s); err != nil {
			return fmt.Errorf("decoding session %x: %w", k, err)
		}
		out = append(out, s)
		return nil
	})
	return out, err
}

// coverage merges the sessions into the disjoint periods the ledger
// covers, oldest first, and says whether a listener is live now.
func coverage(ss []Session, now time.Time) (covered []Interval, live bool) {
	var iv []Interval
	for _, s := range ss {
		end, l := s.end(now)
		live = live || l
		if end.Before(s.Start) {
			continue
		}
		iv = append(iv, Interval{s.Start, end})
	}
	sort.Slice(iv, func(i, j int) bool { return iv[i].From.Before(iv[j].From) })
	for _, i := range iv {
		if n := len(covered); n > 0 && !i.From.After(covered[n-1].To) {
			covered[n-1].To = maxTime(covered[n-1].To, i.To)
			continue
		}
		covered = append(covered, i)
	}
	return covered, live
}

// gapsOf are the periods between covered ones, and from the last one to
// now when no listener is live.
func gapsOf(covered []Interval, live bool, now time.Time) []Interval {
	var gaps []Interval
	for i := 1; i < len(covered); i++ {
		gaps = append(gaps, Interval{covered[i-1].To, covered[i].From})
	}
	if n := len(covered); n > 0 && !live && covered[n-1].To.Before(now) {
		gaps = append(gaps, Interval{covered[n-1].To, now})
	}
	return gaps
}

// isCovered says whether [from, to] lies inside one covered period.
func isCovered(covered []Interval, from, to time.Time) bool {
	for _, c := range covered {
		if !from.Before(c.From) && !to.After(c.To) {
			return true
		}
	}
	return false
}
