//go:build mutant_norereads

package gc

func init() { removed.rereads = true }
