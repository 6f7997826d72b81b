package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/regkeeper/regkeeper/audit"
	"strings"
	"time"

	"github.com/regkeeper/regkeeper/inventory"
	"github.com/regkeeper/regkeeper/usage"
)

// openUsage returns the answers of the ledger of --usage in inventory's
// terms (nil when the flag is not given), and a close. The ledger is opened
// at the first question (after the registry walk) and closed by the close:
// a reader holds a shared lock on the file that keeps usage serve from
// starting, so it holds it only while it reads.
func openUsage(path string) (inventory.UsageFunc, func(), error) {
	if path == "" {
		return nil, func() {}, nil
	}
	if _, err := os.Stat(path); err != nil {
		return nil, nil, fmt.Errorf("--usage: %w", err)
	}
	var l *usage.Ledger
	fn := func(repo, tag, digest string) (*inventory.Usage, error) {
		if l == nil {
			var err error
			if l, err = usage.Open(path); err != nil {
				return nil, fmt.Errorf("--usage: %w", err)
			}
		}
		u, err := l.Usage(repo, tag, digest)
		if err != nil {
			return nil, err
		}
		return &inventory.Usage{LastPulled: u.LastPulled, Pulls30d: u.Pulls30d, InUse: u.InUse, InUseWhere: u.Where}, nil
	}
	return fn, func() {
		if l != nil {
			l.Close()
		}
	}, nil
}

// usageCells are the LAST PULLED, PULLS 30D and IN USE cells of a table.
func usageCells(u *inventory.Usage) []any {
	last, pulls, in := "unknown", "unknown", "unknown"
	if u.LastPulled != nil {
		last = u.LastPulled.UTC().Format(time.RFC3339)
	} else if u.Pulls30d != nil {
		last = "not in 30d"
	}
	if u.Pulls30d != nil {
		pulls = fmt.Sprint(*u.Pulls30d)
	}
	if u.InUse != nil {
		in = "no"
		if *u.InUse {
			in = strings.Join(u.InUseWhere, "; ")
		}
	}
	return []any{last, pulls, in}
}

// usageFlag is --usage on audit and report: findings sorted by use.
type usageFlag struct{ path string }

func (u *usageFlag) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&u.path, "usage", "", "usage ledger file (readable while usage serve runs): sort findings by use and say how much each image is pulled and where it runs")
}

// apply makes the audit's inventory read the ledger; call the returned
// close when done.
func (u *usageFlag) apply(ao *audit.Options) (func(), error) {
	fn, closeLedger, err := openUsage(u.path)
	if err != nil {
		return nil, err
	}
	ao.Inventory.Usage = fn
	return closeLedger, nil
}
