//go:build mutant_nosettleleftovers

package gc

func init() { removed.settleLeftovers = true }
