package main

import (
	"os"
	"strings"
	"testing"
)

// shellWords splits a simple shell command line: words, '…' and "…"
// quoting, and stops at a comment, a redirection or a pipe.
func shellWords(line string) []string {
	var words []string
	var cur strings.Builder
	inWord := false
	var quote rune
	for _, r := range line {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				words, inWord = append(words, cur.String()), false
				cur.Reset()
			}
		case !inWord && (r == '#' || r == '>' || r == '|' || r == '&'):
			return words
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

// Every `regkeeper …` (or `go run ./cmd/regkeeper …`) line of the README's
// shell examples runs a command, flags and arguments the
// real command tree accepts.
func TestREADMEExamplesParse(t *testing.T) {
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	inSh, n := false, 0
	var pending string
	for _, line := range strings.Split(string(raw), "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(trimmed, "```sh"):
			inSh = true
			continue
		case strings.HasPrefix(trimmed, "```"):
			inSh = false
			continue
		case !inSh:
			continue
		}
		// The checkout's one-liner (go run ./cmd/regkeeper ...) is checked
		// as the same command line.
		if rest, ok := strings.CutPrefix(trimmed, "go run ./cmd/regkeeper "); ok {
			trimmed = "regkeeper " + rest
		}
		if pending != "" {
			trimmed = pending + " " + trimmed
			pending = ""
		}
		if strings.HasSuffix(trimmed, "\\") {
			pending = strings.TrimSuffix(trimmed, "\\")
			continue
		}
		words := shellWords(trimmed)
		if len(words) == 0 || words[0] != "regkeeper" {
			continue
		}
		n++
		root := newRootCmd()
		root.InitDefaultVersionFlag() // cobra adds --version when it executes
		cmd, rest, err := root.Find(words[1:])
		if err != nil {
			t.Errorf("README: %s: %v", trimmed, err)
			continue
		}
		if err := cmd.ParseFlags(rest); err != nil {
			t.Errorf("README: %s: %v", trimmed, err)
			continue
		}
		if cmd.Args != nil && cmd != root {
			if err := cmd.Args(cmd, cmd.Flags().Args()); err != nil {
				t.Errorf("README: %s: %v", trimmed, err)
			}
		}
	}
	t.Logf("%d regkeeper command lines checked", n)
	if n < 10 {
		t.Errorf("only %d regkeeper examples found in the README", n)
	}
}
