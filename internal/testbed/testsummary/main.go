// Command testsummary reads `go test -json` on its standard input and
// prints what `go test` without -v prints (each package's closing line,
// the whole output of each failed test), then every test that skipped,
// with its reason. scripts/test pipes the suite through it. The last line
// it prints is go test's own last line, held back until after the list,
// for the tools that read a run's closing line.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(2)
	}
}

func run(in io.Reader, out io.Writer) error {
	type key struct{ pkg, test string }
	outputs := map[key][]string{}
	var skipped []string
	pending := "" // the last package line, printed last
	emit := func(s string) {
		fmt.Fprint(out, pending)
		pending = s
	}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil || e.Action == "" {
			emit(string(line) + "\n") // not an event: pass it on
			continue
		}
		k := key{e.Package, e.Test}
		switch e.Action {
		case "build-output": // a package that does not compile: the compiler's words
			emit(e.Output)
		case "output":
			if e.Test == "" {
				// Package lines: ok, FAIL, PASS, "no test files", build output.
				if !strings.HasPrefix(e.Output, "=== ") && e.Output != "PASS\n" {
					emit(e.Output)
				}
				continue
			}
			outputs[k] = append(outputs[k], e.Output)
		case "fail":
			if e.Test != "" {
				for _, l := range outputs[k] {
					if !strings.HasPrefix(l, "=== ") {
						emit(l)
					}
				}
			}
			delete(outputs, k)
		case "skip":
			if e.Test == "" {
				// a package without test files: go test's "?" line says so
				delete(outputs, k)
				continue
			}
			var why []string
			for _, l := range outputs[k] {
				l = strings.TrimSpace(l)
				if l == "" || strings.HasPrefix(l, "=== ") || strings.HasPrefix(l, "--- SKIP") {
					continue
				}
				why = append(why, l)
			}
			skipped = append(skipped, fmt.Sprintf("%s %s: %s", e.Package, e.Test, strings.Join(why, " ")))
			delete(outputs, k)
		case "pass":
			delete(outputs, k)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	sort.Strings(skipped)
	fmt.Fprintf(out, "== %d tests skipped\n", len(skipped))
	for _, s := range skipped {
		fmt.Fprintln(out, "SKIP", s)
	}
	fmt.Fprint(out, pending)
	return nil
}
