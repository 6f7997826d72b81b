package audit

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// Node is one image of the lineage: the tags (and platform) that name one
// platform manifest, and the images built on it.
type Node struct {
	// Names are "repository:tag" of every tag naming this manifest; for a
	// base no tag names any more, its last known name.
	Names    []string
	Digest   string
	Platform string
	// Base, for a node that is not an image of the audit: a base known by
	// annotation or history only.
	Base     *Base
	Reasons  []string
	Children []*Node
}

// Lineage arranges the audited images into trees: each image under the base
// it was built on. Roots are images with no base (FROM scratch, or bases
// themselves) and bases that are not images of the registry (untagged since,
// on another registry, or known only from history).
func (r *Result) Lineage() []*Node {
	byDigest := map[string]*Node{}
	for _, img := range r.Images {
		n := byDigest[img.Digest]
		if n == nil {
			n = &Node{Digest: img.Digest, Platform: img.Platform, Reasons: img.Reasons}
			byDigest[img.Digest] = n
		}
		n.Names = append(n.Names, img.Repository+":"+img.Tag)
	}
	var roots []*Node
	attached := map[string]bool{}
	for _, img := range r.Images {
		if attached[img.Digest] {
			continue
		}
		attached[img.Digest] = true
		n := byDigest[img.Digest]
		b := img.Base
		if b == nil {
			roots = append(roots, n)
			continue
		}
		key := b.Digest
		if key == "" {
			key = "unknown:" + b.Name() + ":" + img.Platform
		}
		parent := byDigest[key]
		if parent == nil {
			parent = &Node{Names: []string{b.Name()}, Digest: b.Digest, Platform: img.Platform, Base: b}
			byDigest[key] = parent
			roots = append(roots, parent)
		}
		parent.Children = append(parent.Children, n)
	}
	var sortTree func([]*Node)
	sortTree = func(ns []*Node) {
		slices.SortFunc(ns, func(a, b *Node) int { return strings.Compare(a.label(), b.label()) })
		for _, n := range ns {
			sortTree(n.Children)
		}
	}
	sortTree(roots)
	return roots
}

func (n *Node) label() string {
	s := strings.Join(n.Names, ", ")
	if n.Platform != "" {
		s += " [" + n.Platform + "]"
	}
	return s
}

// WriteTree prints the lineage as an indented tree.
func WriteTree(w io.Writer, roots []*Node) error {
	var walk func(n *Node, prefix string, last bool, top bool) error
	walk = func(n *Node, prefix string, last, top bool) error {
		line, next := "", ""
		switch {
		case top:
		case last:
			line, next = prefix+"└── ", prefix+"    "
		default:
			line, next = prefix+"├── ", prefix+"│   "
		}
		label := n.label()
		if n.Base != nil && n.Base.DetectedBy != "" && n.Base.Repository == "" {
			label = "(base not in the registry, seen in history)" + strings.TrimPrefix(label, "(unknown)")
		}
		if len(n.Reasons) > 0 {
			label += "  ! " + strings.Join(n.Reasons, ", ")
		}
		if _, err := fmt.Fprintln(w, line+label); err != nil {
			return err
		}
		for i, c := range n.Children {
			if err := walk(c, next, i == len(n.Children)-1, false); err != nil {
				return err
			}
		}
		return nil
	}
	for _, r := range roots {
		if err := walk(r, "", true, true); err != nil {
			return err
		}
	}
	return nil
}
