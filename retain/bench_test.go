package retain

import (
	"fmt"
	"testing"
	"time"
)

// manyTags is one repository of n tags on 50 digests, shaped as
// bench/retain/gen makes it.
func manyTags(n int) *Facts {
	r := RepoFacts{Name: "ci/app", Tags: make([]TagFacts, n)}
	blobs := make([][]Blob, 50)
	for i := range blobs {
		d := fmt.Sprintf("sha256:%064d", i)
		blobs[i] = []Blob{{d, 500}, {fmt.Sprintf("sha256:c%063d", i), 300}, {fmt.Sprintf("sha256:l%063d", i), 256}}
	}
	for i := range n {
		var tag string
		switch i % 4 {
		case 0, 1:
			tag = fmt.Sprintf("main-%d", i)
		case 2:
			tag = fmt.Sprintf("feat-%d-%d", i%97, i)
		default:
			tag = fmt.Sprintf("%d.%d.%d", i%7, i%13, i)
		}
		b := blobs[i%50]
		r.Tags[i] = TagFacts{Tag: tag, Digest: b[0].Digest, Blobs: b, Pushed: now.Add(-timeMinutes(5 * (n - i))), PushedFrom: FromStorage}
	}
	return &Facts{Repositories: []RepoFacts{r}}
}

func BenchmarkApply100k(b *testing.B) {
	facts := manyTags(100000)
	p, err := Parse([]byte(`
policies:
  - repositories: ["ci/**"]
    keep:
      - tags: ['^seed-']
      - mostRecentlyPushed: 10
        tags: ['^main-', '^feat-']
        groupBy: '^(.+)-[0-9]+$'
      - pushedWithin: 30d
      - semver: {majors: 2, minorsPerMajor: 2, patchesPerMinor: 1}
`))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		Apply(facts, p, now)
	}
}

func timeMinutes(n int) time.Duration { return time.Duration(n) * time.Minute }
