package main

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/regkeeper/regkeeper/gc"
	"github.com/regkeeper/regkeeper/internal/output"
)

// registerGuardFlags declares the gc flags of provenance and of the
// guards, shared by gc and cycle.
func registerGuardFlags(f *pflag.FlagSet, opts *gc.Options) {
	f.BoolVar(&opts.NoKeepBases, "no-keep-bases", false, "the stock rule: delete an untagged manifest even when a live image names it as its base (org.opencontainers.image.base.digest)")
	f.BoolVar(&opts.AllowDeleteAll, "allow-delete-all", false, "carry out a plan that deletes every blob, or collects a storage with blobs but no tag (refused otherwise: a wrong --root looks like that)")
	opts.MaxDeleteRatio = gc.DefaultMaxDeleteRatio
	f.Var((*ratioValue)(&opts.MaxDeleteRatio), "max-delete-ratio", "refuse a plan deleting more than this share of the stored bytes (0.5 or 50%; 0 or 1: no limit): more than a weekly run deletes, what missing repositories look like")
}

// guardDefaults: --allow-delete-all, consent to delete everything, lifts
// the default --max-delete-ratio (one given on the command line stays).
func guardDefaults(cmd *cobra.Command, opts *gc.Options) {
	if opts.AllowDeleteAll && !cmd.Flags().Changed("max-delete-ratio") {
		opts.MaxDeleteRatio = 0
	}
}

// ratioValue is a share: 0.25 or 25%, from 0 (no limit) to 1.
type ratioValue float64

func (r *ratioValue) String() string {
	if *r == 0 {
		return ""
	}
	return strconv.FormatFloat(float64(*r), 'g', -1, 64)
}

func (r *ratioValue) Set(s string) error {
	pct := strings.HasSuffix(s, "%")
	v, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
	if err != nil {
		return fmt.Errorf("not a ratio (0.5 or 50%%): %q", s)
	}
	if pct {
		v /= 100
	}
	if v < 0 || v > 1 || math.IsNaN(v) {
		return fmt.Errorf("a ratio is from 0 to 1 (0%% to 100%%): %q", s)
	}
	*r = ratioValue(v)
	return nil
}

func (r *ratioValue) Type() string { return "ratio" }

// deleteShareLine says what share of the stored bytes the plan deletes,
// against the limit.
func deleteShareLine(rep *gc.Report) string {
	limit := "no --max-delete-ratio"
	if rep.MaxDeleteRatio > 0 {
		limit = fmt.Sprintf("limit --max-delete-ratio %g", rep.MaxDeleteRatio)
	}
	return fmt.Sprintf("%.1f%% of the %s stored (%s)", 100*rep.DeleteRatio, output.Bytes(rep.BytesStored), limit)
}

// writeGCKeptLines adds to the table what gc kept on purpose: what the
// grace spared (saying so when it is why nothing was deleted) and the
// bases of live images.
func writeGCKeptLines(out io.Writer, rep *gc.Report) {
	if n := rep.GraceNote(); n != "" {
		fmt.Fprintln(out, n)
	}
	if rep.ManifestsKeptAsBase > 0 {
		what := fmt.Sprintf("%d manifests", rep.ManifestsKeptAsBase)
		if rep.ManifestsKeptAsBase == 1 {
			what = "1 manifest"
		}
		fmt.Fprintf(out, "kept as the base of live images: %s (--no-keep-bases deletes them)\n", what)
	}
}
