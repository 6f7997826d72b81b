//go:build mutant_norestoreleftovers

package gc

func init() { removed.restoreLeftovers = true }
