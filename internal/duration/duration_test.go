package duration

import (
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		bad  bool
	}{
		{in: "0", want: 0},
		{in: "7d", want: 7 * Day},
		{in: "1.5d", want: 36 * time.Hour},
		{in: "26w", want: 26 * Week},
		{in: "1h", want: time.Hour},
		{in: "90m", want: 90 * time.Minute},
		{in: "1h30m", want: 90 * time.Minute},
		{in: " 4320h ", want: 4320 * time.Hour},
		{in: "", bad: true},
		{in: "d", bad: true},
		{in: "-1d", bad: true},
		{in: "-1h", bad: true},
		{in: "7 days", bad: true},
		{in: "1y", bad: true},
		{in: "99999999999w", bad: true},
	} {
		got, err := Parse(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("Parse(%q) = %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Parse(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestFormatRoundTrip(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0", time.Hour: "1h", 90 * time.Minute: "1h30m", 6 * time.Hour: "6h",
		Day: "1d", 7 * Day: "1w", 10 * Day: "10d", 30 * time.Second: "30s", 36 * time.Hour: "36h",
	} {
		got := Format(d)
		if got != want {
			t.Errorf("Format(%v) = %q, want %q", d, got, want)
		}
		if back, err := Parse(got); err != nil || back != d {
			t.Errorf("Parse(Format(%v)) = %v, %v", d, back, err)
		}
	}
}

func TestFlag(t *testing.T) {
	d := time.Hour
	f := pflag.NewFlagSet("x", pflag.ContinueOnError)
	Var(f, &d, "grace", "spare")
	if got := f.Lookup("grace").DefValue; got != "1h" {
		t.Errorf("default shown as %q, want 1h", got)
	}
	if err := f.Parse([]string{"--grace", "7d"}); err != nil || d != 7*Day {
		t.Errorf("--grace 7d: %v, %v", d, err)
	}
	if err := f.Parse([]string{"--grace", "soon"}); err == nil {
		t.Error("--grace soon: no error")
	}
}
