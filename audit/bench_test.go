package audit_test

import (
	"context"
	"testing"
	"time"

	"github.com/regkeeper/regkeeper/audit"
	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/estate"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
	"github.com/regkeeper/regkeeper/inventory"
)

// BenchmarkAnalyze times the audit's own work over an inventory of 604 tags
// on 4 shared bases (60 repositories x 10 tags): the lineage index and every
// verdict, without the registry walk; with the base rules alone, and with
// every image rule on (no referrers API: what the inventory shows).
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
	every := audit.DefaultPolicy()
	every.MaxImageAge = 90 * 24 * time.Hour
	every.RequireLabels = []string{"org.opencontainers.image.revision", "org.opencontainers.image.source"}
	every.RequireSignature, every.RequireSBOM = true, true
	for _, bc := range []struct {
		name string
		pol  audit.Policy
	}{{"base-rules", audit.Policy{MaxBaseAge: audit.DefaultMaxBaseAge}}, {"every-rule", every}} {
		b.Run(bc.name, func(b *testing.B) {
			opts := audit.Options{Policy: bc.pol}
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
		})
	}
}
