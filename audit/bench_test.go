package audit_test

import (
	"context"
	"testing"

	"github.com/regkeeper/regkeeper/audit"
	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/estate"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
	"github.com/regkeeper/regkeeper/inventory"
)

// BenchmarkAnalyze times the audit's own work over an inventory of 604 tags
// on 4 shared bases (60 repositories x 10 tags): the lineage index and every
// verdict, without the registry walk.
//
//	go test -run '^$' -bench Analyze ./audit
func BenchmarkAnalyze(b *testing.B) {
	srv := regtest.Registry(b, embedded.Options{})
	ctx := context.Background()
	if _, err := estate.Fleet(ctx, srv.Host, estate.FleetOptions{Repos: 60, Tags: 10, Bases: 4, Insecure: true}); err != nil {
		b.Fatal(err)
	}
	inv, err := inventory.Run(ctx, srv.Host, inventory.Options{Client: regtest.Client()})
	if err != nil {
		b.Fatal(err)
	}
	opts := audit.Options{Policy: audit.Policy{MaxBaseAge: audit.DefaultMaxBaseAge}}
	var res *audit.Result
	for b.Loop() {
		res = audit.Analyze(ctx, inv, nil, opts)
	}
	found := 0
	for _, img := range res.Images {
		if img.Base != nil && img.Base.DetectedBy == audit.ByLayers {
			found++
		}
	}
	if found != 600 {
		b.Fatalf("%d of 600 applications on a base found by layers", found)
	}
}
