// Package duration is the one parser of durations on regkeeper's command
// line and in its policy files: every duration flag (--grace, --stale-lock,
// --uploads-older-than, --max-base-age, …) accepts the same units.
package duration

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// Day and Week are the units Go's time.ParseDuration lacks.
const (
	Day  = 24 * time.Hour
	Week = 7 * Day
)

// Units is what every duration accepts, for help texts and error messages.
const Units = "days (7d), weeks (2w) or a Go duration (90m, 1h30m, 168h)"

// Parse parses a duration: a number of days ("7d", "1.5d") or weeks ("26w"),
// or a Go duration ("90m", "1h30m", "4320h"); "0" is zero. Negative
// durations are errors.
func Parse(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	bad := fmt.Errorf("duration %q: want %s", s, Units)
	for _, u := range []struct {
		suffix string
		unit   time.Duration
	}{{"d", Day}, {"w", Week}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseFloat(n, 64)
			if err != nil || v < 0 || v*float64(u.unit) > float64(1<<63-1) {
				return 0, bad
			}
			return time.Duration(v * float64(u.unit)), nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, bad
	}
	return d, nil
}

// Format writes d the shortest way Parse reads back: whole weeks and days
// as "2w" and "7d", else Go's form without zero units ("1h", "90m", "1h30m").
func Format(d time.Duration) string {
	switch {
	case d == 0:
		return "0"
	case d%Week == 0:
		return strconv.FormatInt(int64(d/Week), 10) + "w"
	case d%Day == 0:
		return strconv.FormatInt(int64(d/Day), 10) + "d"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// Value is a pflag.Value for a duration flag.
type Value struct{ d *time.Duration }

// NewValue returns a flag value that writes into d.
func NewValue(d *time.Duration) *Value { return &Value{d} }

func (v *Value) String() string {
	if v == nil || v.d == nil {
		return "0"
	}
	return Format(*v.d)
}

// Set parses s with Parse.
func (v *Value) Set(s string) error {
	d, err := Parse(s)
	if err != nil {
		return err
	}
	*v.d = d
	return nil
}

// Type names the value in help texts.
func (v *Value) Type() string { return "duration" }

// Var declares a duration flag on f that writes into p, whose current value
// is the default.
func Var(f *pflag.FlagSet, p *time.Duration, name, usage string) {
	f.Var(NewValue(p), name, usage)
}
