//go:build mutant_nosettle

package gc

func init() { removed.settle = true }
