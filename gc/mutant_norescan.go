//go:build mutant_norescan

package gc

func init() { removed.rescan = true }
