//go:build mutant_nosecondclear

package gc

func init() { removed.secondClear = true }
