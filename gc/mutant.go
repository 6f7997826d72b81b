// Mutations: the protections of the online protocol that scripts/mutants
// removes one at a time, to show that the tests named for each fail
// without it (README, "Proofs"). Every field is false in a normal build;
// a build with the tag mutant_<name> sets one (mutant_<name>.go), and
// nothing else differs.

package gc

var removed struct {
	settle           bool // sweep.settle waits not at all (the cache's second clear goes with it)
	secondClear      bool // sweep.settle waits but does not clear the redis cache again
	redisClear       bool // the redis cache is never cleared
	rescan           bool // no re-scan: pushes during the run are not made whole
	restoreLeftovers bool // a crashed run's quarantined blobs the mark keeps are not restored
	rereads          bool // no re-read of tags and references before the deletions
	settleLeftovers  bool // a run that sweeps nothing new skips the settle though a quarantine is pending
}
