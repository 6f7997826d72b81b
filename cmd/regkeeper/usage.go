package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/regkeeper/regkeeper/internal/duration"
	"github.com/regkeeper/regkeeper/internal/output"
	"github.com/regkeeper/regkeeper/usage"
	"github.com/regkeeper/regkeeper/usage/kube"
)

func newUsageCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "usage",
		Short: "The usage ledger: what is pulled from the registry and what is running",
		Long: `usage keeps a ledger of what is pulled from the registry (fed by the
registry's notifications, backfilled from access logs) and of what clusters
run or keep for rollback. inventory --usage, audit --usage and report --usage
read it.`,
		Example: `  # listen for the registry's notifications
  regkeeper usage serve --db /var/lib/regkeeper/usage.db --token-file /etc/regkeeper/usage.token

  # what the ledger knows, its gaps and freshness
  regkeeper usage show --db /var/lib/regkeeper/usage.db`,
	}
	cmd.AddCommand(newUsageServeCmd(g), newUsageShowCmd(g), newUsageImportCmd(g), newUsageKubeCmd(g))
	return cmd
}

// ledgerOptions are --db and --config.
type ledgerOptions struct {
	db, config string
}

func (o *ledgerOptions) register(cmd *cobra.Command, withConfig bool) {
	cmd.Flags().StringVar(&o.db, "db", "", "the ledger file (bbolt; created if absent by the commands that write)")
	if withConfig {
		cmd.Flags().StringVar(&o.config, "config", "", "YAML or JSON: ignoreUserAgents, ignoreAccounts, windowDays")
	}
}

func (o *ledgerOptions) openWrite(g *globalOptions, cmd *cobra.Command) (*usage.Ledger, error) {
	if o.db == "" {
		return nil, usageError("--db is required")
	}
	cfg, err := usage.LoadConfig(o.config)
	if err != nil {
		return nil, usageError("--config: %v", err)
	}
	return usage.OpenWrite(o.db, usage.WithIgnore(cfg.Ignore), usage.WithWindowDays(cfg.WindowDays), usage.WithLogger(g.logger(cmd)))
}

func newUsageServeCmd(g *globalOptions) *cobra.Command {
	var (
		lo                    ledgerOptions
		listen, tokenFile, rg string
		maxBody               int64
		every                 time.Duration
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Receive the registry's notifications into the ledger",
		Long: `serve listens for the registry's notifications (POST /events, media type
application/vnd.docker.distribution.events.v2+json) and stores each envelope
in the ledger in one transaction before acknowledging it, so the registry's
own retries cover a listener that was down. It records when it listens
(start, a heartbeat every --every, stop): the time it was not listening is a
gap, and questions over a gap are answered "unknown".

While serve runs it holds the ledger file; every --every it writes a
consistent snapshot next to it (FILE.snapshot), which readers (usage show,
inventory --usage) open instead. GET /usage answers from the live ledger,
GET /metrics serves Prometheus metrics, GET /healthz says ok.`,
		Example: `  # loopback, a shared token the registry sends in its endpoint headers
  regkeeper usage serve --db /var/lib/regkeeper/usage.db --token-file /etc/regkeeper/usage.token

  # listen on every interface, read indexes the ledger did not see pushed
  regkeeper usage serve --listen :5050 --db usage.db --token-file usage.token --registry registry.example.com`,
		Args: positional(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			token, err := readToken(tokenFile)
			if err != nil {
				return err
			}
			l, err := lo.openWrite(g, cmd)
			if err != nil {
				return err
			}
			defer l.Close()
			log := g.logger(cmd)
			opts := usage.ServeOptions{Listen: listen, Token: token, MaxBody: maxBody, Every: every, Logger: log}
			if rg != "" {
				opts.Indexes = usage.RegistryIndexes(rg, g.client(log))
			}
			if token == "" {
				log.Warn("no --token-file: any client that reaches the listener can post events")
			}
			return usage.Serve(cmd.Context(), l, opts)
		},
	}
	lo.register(cmd, true)
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:5050", "address to listen on (loopback unless told otherwise)")
	cmd.Flags().StringVar(&tokenFile, "token-file", "", "file holding the shared token required as 'Authorization: Bearer TOKEN'")
	cmd.Flags().StringVar(&rg, "registry", "", "registry host to read indexes from when the ledger did not see them pushed (uses --insecure)")
	cmd.Flags().Int64Var(&maxBody, "max-body", usage.DefaultMaxBody, "largest envelope accepted, in bytes")
	every = 30 * time.Second
	duration.Var(cmd.Flags(), &every, "every", "heartbeat and reader-snapshot period")
	return cmd
}

func newUsageShowCmd(g *globalOptions) *cobra.Command {
	var lo ledgerOptions
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Print the ledger: every tag's pulls and use, its gaps and freshness",
		Long: `show prints, per tag the ledger knows, the last pull, the last HEAD, the pulls
of the last 30 days, the requests ignored and whether it is in use (and
where), then the periods the ledger covered, its gaps, the in-use sources and
the time of the last event. It works while usage serve runs (it reads serve's
snapshot then, and says so).`,
		Example: `  regkeeper usage show --db /var/lib/regkeeper/usage.db
  regkeeper usage show --db usage.db -o json`,
		Args: positional(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if lo.db == "" {
				return usageError("--db is required")
			}
			l, err := usage.Open(lo.db)
			if err != nil {
				return err
			}
			defer l.Close()
			s, err := l.Summarize(cmd.Context())
			if err != nil {
				return err
			}
			return writeUsageSummary(cmd, g.format(), s)
		},
	}
	lo.register(cmd, false)
	g.registerOutput(cmd)
	return cmd
}

func fmtTime(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func writeUsageSummary(cmd *cobra.Command, f output.Format, s *usage.Summary) error {
	rows := output.Rows{Header: []string{"REPOSITORY", "TAG", "LAST PULLED", "PULLS 30D", "LAST HEAD", "IGNORED", "IN USE"}}
	for _, t := range s.Tags {
		pulls := "unknown"
		if t.Pulls30d != nil {
			pulls = fmt.Sprint(*t.Pulls30d)
		}
		inUse := "unknown"
		if t.InUse != nil {
			inUse = "no"
			if *t.InUse {
				inUse = strings.Join(t.Where, "; ")
			}
		}
		rows.Add(t.Repo, t.Tag, fmtTime(t.LastPulled), pulls, fmtTime(t.LastHead), t.Ignored, inUse)
	}
	if f == output.JSON {
		return output.WriteJSON(cmd.OutOrStdout(), s)
	}
	if err := output.Write(cmd.OutOrStdout(), f, rows, s); err != nil || f != output.Table {
		return err
	}
	w := cmd.OutOrStdout()
	src := ""
	if s.Snapshot {
		src = " (read from the snapshot of a running usage serve)"
	}
	fmt.Fprintf(w, "\nledger %s%s: %d tags, %d manifests, %s\n", s.Path, src, len(s.Tags), s.Digests, output.Bytes(s.SizeBytes))
	fmt.Fprintf(w, "listening now: %v; last event: %s; last in-use snapshot: %s\n", s.Listening, fmtTime(s.LastEvent), fmtTime(s.LastInUse))
	for _, c := range s.Covered {
		fmt.Fprintf(w, "covered: %s .. %s\n", c.From.UTC().Format(time.RFC3339), c.To.UTC().Format(time.RFC3339))
	}
	for _, c := range s.Gaps {
		fmt.Fprintf(w, "gap (unknown): %s .. %s\n", c.From.UTC().Format(time.RFC3339), c.To.UTC().Format(time.RFC3339))
	}
	for _, src := range s.Sources {
		fmt.Fprintf(w, "in use per %s at %s: %d images\n", src.Source, src.At.UTC().Format(time.RFC3339), src.Images)
	}
	return nil
}

func newUsageImportCmd(g *globalOptions) *cobra.Command {
	var lo ledgerOptions
	cmd := &cobra.Command{
		Use:   "import FILE...",
		Short: "Backfill the ledger from access logs",
		Long: `import reads access logs and records every successful GET and HEAD of a
manifest as a pull or a HEAD: the registry's own log (its "response completed"
lines, logrus text or JSON, on stderr), the combined log format the registry's
access log writes on stdout, and the common/combined format of a reverse
proxy (nginx, Apache, Traefik). "-" reads stdin. Gzipped logs are read as
they are (by their content, whatever their name).

Requests in periods the ledger already covers (serve was listening, or an
earlier import) are not counted again; the period from a log's first to its
last line becomes covered. Logs do not name the digest a tag pointed to, so
a by-tag pull is credited to the tag only.`,
		Example: `  regkeeper usage import --db usage.db /var/log/nginx/registry.access.log
  regkeeper usage import --db usage.db /var/log/nginx/registry.access.log.*.gz
  journalctl -u registry -o cat | regkeeper usage import --db usage.db -`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return &exitCodeError{code: exitUsage, err: fmt.Errorf("missing FILE (an access log, or - for stdin)")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := lo.openWrite(g, cmd)
			if err != nil {
				return err
			}
			defer l.Close()
			var results []*usage.ImportResult
			for _, file := range args {
				r := cmd.InOrStdin()
				if file != "-" {
					f, err := os.Open(file)
					if err != nil {
						return err
					}
					defer f.Close()
					r = f
				}
				res, err := l.Import(cmd.Context(), file, r)
				if err != nil {
					return err
				}
				results = append(results, res)
			}
			rows := output.Rows{Header: []string{"FILE", "LINES", "REQUESTS", "RECORDED", "IGNORED", "DUPLICATES", "ALREADY COVERED", "UNPARSED", "FROM", "TO"}}
			for _, r := range results {
				rows.Add(r.File, r.Lines, r.Requests, r.Stored, r.Ignored, r.Duplicates, r.Covered, r.Unparsed, fmtTime(&r.From), fmtTime(&r.To))
			}
			return output.Write(cmd.OutOrStdout(), g.format(), rows, results)
		},
	}
	lo.register(cmd, true)
	g.registerOutput(cmd)
	return cmd
}

func readToken(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", usageError("--token-file: %v", err)
	}
	token := strings.TrimSpace(string(raw))
	if token == "" {
		return "", usageError("--token-file: %s is empty", path)
	}
	return token, nil
}

func newUsageKubeCmd(g *globalOptions) *cobra.Command {
	var (
		lo                          ledgerOptions
		kubeconfig, server, tokFile string
		contexts, from              []string
		inCluster                   bool
	)
	cmd := &cobra.Command{
		Use:   "kube",
		Short: "Record the images Kubernetes clusters run or keep for rollback",
		Long: `kube reads, through client-go, the Pods (containers, init and ephemeral
containers, and the digests their status reports), ReplicaSets (those scaled
to zero are a Deployment's rollback targets), Deployments, StatefulSets,
DaemonSets, Jobs and CronJobs of every namespace, and records the images they
name as in use now, with where ("cluster prod: Deployment shop/web"). Each
cluster's record replaces its previous one.

Clusters: every context of the kubeconfig (--kubeconfig, else $KUBECONFIG,
else ~/.kube/config), or those named with --context, or --in-cluster (the
service account of the pod it runs in; the cluster is named "in-cluster").
--from FILE reads instead the JSON of
  kubectl get pods,rs,deploy,sts,ds,jobs,cronjobs -A -o json
(the source is named after the file) or a plain list of image references, one
a line, with an optional "where" after a space (ECS, Nomad, a spreadsheet).

The ledger is written directly (--db), or, while usage serve holds it,
through serve (--server URL, with serve's --token-file).`,
		Example: `  # every context of ~/.kube/config
  regkeeper usage kube --db usage.db

  # two clusters, through a running usage serve
  regkeeper usage kube --context prod --context staging --server http://127.0.0.1:5050 --token-file usage.token

  # a cluster regkeeper cannot reach
  kubectl get pods,rs,deploy,sts,ds,jobs,cronjobs -A -o json > prod.json
  regkeeper usage kube --db usage.db --from prod.json`,
		Args: positional(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (lo.db == "") == (server == "") {
				return usageError("give one of --db and --server")
			}
			if len(from) > 0 && (inCluster || len(contexts) > 0) {
				return usageError("--from reads files instead of clusters: not with --context or --in-cluster")
			}
			token, err := readToken(tokFile)
			if err != nil {
				return err
			}
			snaps, err := usageKube(cmd, kubeconfig, contexts, inCluster, from)
			if err != nil {
				return err
			}
			if server != "" {
				for _, s := range snaps {
					if err := usage.PostSnapshot(cmd.Context(), server, token, s); err != nil {
						return err
					}
				}
			} else {
				l, err := lo.openWrite(g, cmd)
				if err != nil {
					return err
				}
				defer l.Close()
				for _, s := range snaps {
					if err := l.RecordInUse(cmd.Context(), s); err != nil {
						return err
					}
				}
			}
			rows := output.Rows{Header: []string{"SOURCE", "AT", "IMAGES"}}
			for _, s := range snaps {
				rows.Add(s.Source, s.At.Format(time.RFC3339), len(s.Images))
			}
			return output.Write(cmd.OutOrStdout(), g.format(), rows, snaps)
		},
	}
	lo.register(cmd, false)
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
	cmd.Flags().StringArrayVar(&contexts, "context", nil, "kubeconfig context to read (repeatable; default: every context)")
	cmd.Flags().BoolVar(&inCluster, "in-cluster", false, "read the cluster this runs in, with its service account")
	cmd.Flags().StringArrayVar(&from, "from", nil, "read kubectl JSON or a list of image references from this file instead (repeatable)")
	cmd.Flags().StringVar(&server, "server", "", "post to a running usage serve at this URL instead of writing --db")
	cmd.Flags().StringVar(&tokFile, "token-file", "", "with --server: the file holding serve's token")
	g.registerOutput(cmd)
	return cmd
}

// usageKube reads the snapshots the flags ask for.
func usageKube(cmd *cobra.Command, kubeconfig string, contexts []string, inCluster bool, from []string) ([]usage.Snapshot, error) {
	now := time.Now()
	var snaps []usage.Snapshot
	if len(from) > 0 {
		for _, f := range from {
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, err
			}
			s, err := kube.FromFile(data, filepath.Base(f), now)
			if err != nil {
				return nil, err
			}
			snaps = append(snaps, s)
		}
		return snaps, nil
	}
	clusters, err := kube.Clusters(kubeconfig, contexts, inCluster)
	if err != nil {
		return nil, err
	}
	for _, c := range clusters {
		s, err := kube.Collect(cmd.Context(), c.Client, c.Name, now)
		if err != nil {
			return nil, err
		}
		snaps = append(snaps, s)
	}
	return snaps, nil
}
