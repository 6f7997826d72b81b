//go:build mutant_noredisclear

package gc

func init() { removed.redisClear = true }
