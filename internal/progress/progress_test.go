package progress

import (
	"bytes"
	"testing"
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
