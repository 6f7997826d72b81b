package progress

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestSilentUnlessAsked(t *testing.T) {
	var buf bytes.Buffer
	// A buffer is not a terminal: auto draws nothing.
	bar := New(&buf, Auto).Count(10, "repositories")
	bar.Add(5)
	bar.Done()
	if buf.Len() != 0 {
		t.Fatalf("auto mode drew on a non-terminal: %q", buf.String())
	}
	New(&buf, Never).Bytes(10, "x").Add(1)
	if buf.Len() != 0 {
		t.Fatalf("never mode drew: %q", buf.String())
	}
	b := New(&buf, Always).Count(10, "repositories")
	b.Add(10)
	b.Done()
	if buf.Len() == 0 {
		t.Fatal("always mode drew nothing")
	}
}

func TestParseMode(t *testing.T) {
	if _, err := ParseMode("sometimes"); err == nil {
		t.Fatal("accepted a bad mode")
	}
}

// A growing bar learns its total as the work goes: it must not finish when
// the count catches up with the total known so far, and ends drawn at its
// true total in bytes.
func TestProgressGrowingBytes(t *testing.T) {
	var buf bytes.Buffer
	b := New(&buf, Always).Growing("backup")
	b.Grow(1000)
	b.Add(1000) // caught up with what is known so far
	if b.b.IsFinished() {
		t.Fatal("bar finished before Done, at the total known so far")
	}
	b.Grow(3000)
	b.Add(3000)
	if done, total := b.state(); done != 4000 || total <= done {
		t.Errorf("before Done: drawn %d of %d, want 4000 of more than 4000", done, total)
	}
	b.Done()
	if done, total := b.state(); done != 4000 || total != 4000 {
		t.Errorf("after Done: drawn %d of %d, want 4000 of 4000", done, total)
	}
	if out := buf.String(); !strings.Contains(out, "(3.9/3.9 KiB") {
		t.Errorf("last frame does not show 3.9 KiB of 3.9 KiB:\n%q", out)
	}
	// The line is blanked as wide as the last frame, which progressbar
	// draws on finishing without counting its width.
	out := buf.String()
	last := out[strings.LastIndex(out, "\rbackup 100%")+1:]
	frame, _, _ := strings.Cut(last, "\r")
	if want := "\r" + strings.Repeat(" ", utf8.RuneCountInString(frame)) + "\r"; !strings.HasSuffix(out, want) {
		t.Errorf("output does not end blanking the %d columns of the last frame %q:\n%q", utf8.RuneCountInString(frame), frame, out)
	}
}

// A growing bar for a run that stopped early ends where it stopped, not
// filled up.
func TestProgressGrowingInterrupted(t *testing.T) {
	var buf bytes.Buffer
	b := New(&buf, Always).Growing("backup")
	b.Grow(4000)
	b.Add(1000)
	b.Done()
	if done, total := b.state(); done != 1000 || total != 4000 {
		t.Errorf("after Done: drawn %d of %d, want 1000 of 4000", done, total)
	}
	var nilBar *Bar // progress off: every call is a no-op
	nilBar.Grow(1)
	nilBar.Add(1)
	nilBar.Done()
}
