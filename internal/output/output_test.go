package output

import (
	"bytes"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestWrite(t *testing.T) {
	rows := Rows{Header: []string{"REPOSITORY", "TAG"}}
	rows.Add("team-a/api", "1.0")
	rows.Add("a|b", "x,y")
	for _, tc := range []struct {
		f    Format
		want string
	}{
		{Table, "REPOSITORY  TAG\nteam-a/api  1.0\na|b         x,y\n"},
		{CSV, "REPOSITORY,TAG\nteam-a/api,1.0\na|b,\"x,y\"\n"},
		{Markdown, "| REPOSITORY | TAG |\n|---|---|\n| team-a/api | 1.0 |\n| a\\|b | x,y |\n"},
		{JSON, "{\n  \"n\": 1\n}\n"},
	} {
		var b bytes.Buffer
		if err := Write(&b, tc.f, rows, map[string]int{"n": 1}); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tc.want, b.String()); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.f, diff)
		}
	}
}

func TestParseFormat(t *testing.T) {
	for in, want := range map[string]Format{"": Table, "JSON": JSON, "md": Markdown, "csv": CSV} {
		if got, err := ParseFormat(in); err != nil || got != want {
			t.Errorf("ParseFormat(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseFormat("yaml"); err == nil {
		t.Error("ParseFormat(yaml) accepted")
	}
}

func TestBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 5 << 30: "5.0 GiB"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}
