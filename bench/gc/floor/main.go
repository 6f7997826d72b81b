// Command floor deletes exactly a list of paths from a storage copy with
// the fastest plain method, to time the floor a gc's deletions can reach
// on that disk: files grouped by parent directory, one worker per parent,
// unlinkat relative to the parent opened once; then directories, deepest
// first, the same way. It reads `find -printf '%y %P\n'` lines (type, path
// relative to -root) on stdin and prints the wall seconds it took.
//
//	comm -23 before after | floor -root /tmp/copy -workers 8
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	root := flag.String("root", "", "the storage copy the paths are relative to")
	workers := flag.Int("workers", 8, "parent directories deleted from at once")
	flag.Parse()
	if *root == "" {
		fmt.Fprintln(os.Stderr, "floor: -root is required")
		os.Exit(2)
	}
	var files, dirs []string
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		typ, p, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		if typ == "d" {
			dirs = append(dirs, p)
		} else {
			files = append(files, p)
		}
	}
	deletedDir := map[string]bool{}
	for _, d := range dirs {
		deletedDir[d] = true
	}
	// Phase 1, as a gc that knows the layout does it: each file with the
	// directory holding it when that goes too (a blob's <hex>/data, a
	// link's <hex>/link), relative to the holder's parent; one worker per
	// parent.
	var units []unit
	held := map[string]bool{}
	for _, f := range files {
		h := filepath.Dir(f)
		if deletedDir[h] && h != "." {
			units = append(units, unit{filepath.Dir(h), []string{filepath.Base(h) + "/" + filepath.Base(f), filepath.Base(h) + "/"}})
			held[h] = true
		} else {
			units = append(units, unit{h, []string{filepath.Base(f)}})
		}
	}
	start := time.Now()
	if err := run(*root, units, *workers); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
	// Phase 2: the other directories (a blob prefix left empty, a
	// repository's _layers/sha256), deepest first: each level's are empty
	// once the level below is gone.
	byDepth := map[int][]unit{}
	for _, d := range dirs {
		if !held[d] {
			n := strings.Count(d, "/")
			byDepth[n] = append(byDepth[n], unit{filepath.Dir(d), []string{filepath.Base(d) + "/"}})
		}
	}
	var depths []int
	for n := range byDepth {
		depths = append(depths, n)
	}
	sort.Sort(sort.Reverse(sort.IntSlice(depths)))
	for _, n := range depths {
		if err := run(*root, byDepth[n], *workers); err != nil {
			fmt.Fprintln(os.Stderr, "floor:", err)
			os.Exit(1)
		}
	}
	fmt.Printf("%.3f\n", time.Since(start).Seconds())
	fmt.Fprintf(os.Stderr, "floor: %d files, %d directories\n", len(files), len(dirs))
}

// unit is names to unlink, in order, relative to a parent; a name ending
// in / is a directory.
type unit struct {
	parent string
	names  []string
}

// run unlinks units grouped by parent, workers parents at a time.
func run(root string, units []unit, workers int) error {
	groups := map[string][]string{}
	for _, u := range units {
		groups[u.parent] = append(groups[u.parent], u.names...)
	}
	parents := make(chan string)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for parent := range parents {
				fd, err := unix.Open(filepath.Join(root, parent), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
				if err == nil {
					for _, name := range groups[parent] {
						flags := 0
						if strings.HasSuffix(name, "/") {
							flags = unix.AT_REMOVEDIR
						}
						if e := unix.Unlinkat(fd, strings.TrimSuffix(name, "/"), flags); e != nil && err == nil {
							err = fmt.Errorf("%s/%s: %w", parent, name, e)
						}
					}
					unix.Close(fd)
				}
				if err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for parent := range groups {
		parents <- parent
	}
	close(parents)
	wg.Wait()
	return first
}
