// Package demo runs regkeeper against an embedded registry seeded with the
// sample estate, so that a new user sees every part work on one machine.
package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/regkeeper/regkeeper/audit"
	"github.com/regkeeper/regkeeper/backup"
	"github.com/regkeeper/regkeeper/cycle"
	"github.com/regkeeper/regkeeper/gc"
	"github.com/regkeeper/regkeeper/internal/client"
	"github.com/regkeeper/regkeeper/internal/progress"
	"github.com/regkeeper/regkeeper/internal/testbed/pull"
	"github.com/regkeeper/regkeeper/inventory"
	"github.com/regkeeper/regkeeper/report"
	"github.com/regkeeper/regkeeper/retain"

	"github.com/regkeeper/regkeeper/internal/output"
	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/estate"
)

// Options for Start.
type Options struct {
	// Dir holds the registry's config and storage; empty means a temporary
	// directory that Close removes.
	Dir string
	// Addr to listen on; empty means a free port on 127.0.0.1.
	Addr string
}

// Env is a running demo: the registry and what was seeded into it.
type Env struct {
	Server *embedded.Server
	Estate *estate.Estate
	Dir    string
	temp   bool
}

// markerFile, in a demo's directory, says it is one: a later demo may
// seed into it again.
const markerFile = ".regkeeper-demo"

// checkDir refuses a directory that is neither empty (or absent) nor a
// demo's, so that a demo never seeds a registry into someone's files.
func checkDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && len(entries) == 0) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("opening --dir %s: %w", dir, err)
	}
	if _, err := os.Stat(filepath.Join(dir, markerFile)); err == nil {
		return nil
	}
	// A demo's directory from before the marker: config.yml and storage/.
	_, cerr := os.Stat(filepath.Join(dir, "config.yml"))
	st, serr := os.Stat(filepath.Join(dir, "storage"))
	if cerr == nil && serr == nil && st.IsDir() {
		return nil
	}
	return fmt.Errorf("--dir %s is not empty and is not a demo's directory (no %s): refusing to seed a registry into it; give an empty or new directory", dir, markerFile)
}

// Start starts the embedded registry and seeds the sample estate.
func Start(ctx context.Context, opts Options) (*Env, error) {
	dir, temp := opts.Dir, false
	if dir != "" {
		if err := checkDir(dir); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("creating --dir %s: %w", dir, err)
		}
		if err := os.WriteFile(filepath.Join(dir, markerFile), []byte("a regkeeper demo registry: config.yml, storage/, backup/, report.html\n"), 0o644); err != nil {
			return nil, fmt.Errorf("writing %s: %w", filepath.Join(dir, markerFile), err)
		}
	}
	if dir == "" {
		d, err := os.MkdirTemp("", "regkeeper-demo-")
		if err != nil {
			return nil, err
		}
		dir, temp = d, true
	}
	srv, err := embedded.Start(ctx, embedded.Options{Dir: dir, Addr: opts.Addr})
	if err != nil {
		if temp {
			os.RemoveAll(dir)
		}
		return nil, err
	}
	env := &Env{Server: srv, Dir: dir, temp: temp}
	if env.Estate, err = estate.Seed(ctx, srv.Host, estate.Options{Insecure: true}); err != nil {
		env.Close()
		return nil, fmt.Errorf("seeding the sample estate: %w", err)
	}
	if err := seedCI(ctx, srv, dir, time.Now()); err != nil {
		env.Close()
		return nil, fmt.Errorf("seeding %s: %w", CIRepository, err)
	}
	return env, nil
}

// Close stops the registry and removes a temporary directory.
func (e *Env) Close() error {
	err := e.Server.Close()
	if e.temp {
		os.RemoveAll(e.Dir)
	}
	return err
}

// WriteSeeded prints the registry's address and what was seeded.
func (e *Env) WriteSeeded(w io.Writer) error {
	s := e.Estate
	fmt.Fprintf(w, "registry   %s (plain HTTP)\n", e.Server.Host)
	fmt.Fprintf(w, "storage    %s\n", e.Server.Root)
	fmt.Fprintf(w, "config     %s\n\n", e.Server.ConfigFile)

	var rows output.Rows
	rows.Header = []string{"REPOSITORY", "TAG", "DIGEST", "KIND"}
	tags := s.Tags()
	refs := make([]string, 0, len(tags))
	for ref := range tags {
		refs = append(refs, ref)
	}
	sort.Strings(refs)
	for _, ref := range refs {
		repo, tag, _ := strings.Cut(ref, ":")
		m, _ := s.Find(repo, tags[ref])
		rows.Add(repo, tag, output.ShortDigest(m.Digest.String()), m.Role)
	}
	if err := output.Write(w, output.Table, rows, nil); err != nil {
		return err
	}
	dead := s.ManifestsByLiveness(false)
	var deadN int
	for _, d := range dead {
		deadN += len(d)
	}
	fmt.Fprintf(w, "\nseeded %d repositories, %d tags, %d manifests; %d manifests are untagged leftovers of tag replacement, %d blobs are garbage\n"+
		"(one leftover, an untagged debian, is the base of team-b/web:prod: gc keeps it and its config for the audit, see --no-keep-bases)\n",
		len(s.Repositories()), len(tags), len(s.Manifests), deadN, len(s.DeadBlobs()))
	fmt.Fprintf(w, "and %s: %d CI builds and releases (main-N, feat-x-N, semantic versions, latest) for the retention policy in %s:\n%s",
		CIRepository, len(ciTags)+1, filepath.Join(e.Dir, "retain.yml"), Policy)
	return nil
}

// CycleResult is the weekly cycle run on the demo estate, and the proof
// that every live tag still pulls afterwards.
type CycleResult struct {
	*cycle.Result
	// Pulled counts the tags pulled back after gc, every blob verified;
	// PullErrors lists those that failed.
	Pulled     int
	PullErrors []string
	BackupDir  string
	ReportFile string
}

// RunCycle runs the weekly cycle on the demo registry: inventory, audit (with
// base/centos banned), backup into Dir/backup, verify, gc with no grace
// window (everything was just pushed), the HTML report into Dir/report.html,
// and then pulls every live tag back.
func (e *Env) RunCycle(ctx context.Context, progress *progress.Reporter, log *slog.Logger) (*CycleResult, error) {
	ban, err := audit.ParsePattern("base/centos")
	if err != nil {
		return nil, err
	}
	drv, err := gc.Open(ctx, e.Server.ConfigFile)
	if err != nil {
		return nil, err
	}
	gcOpts := gc.DefaultOptions()
	gcOpts.Grace, gcOpts.Logger = 0, log
	// The demo's registry is in-process: a request's check and its write are
	// microseconds apart, a second of settle is plenty.
	gcOpts.Settle = time.Second
	cli := client.Options{Insecure: true}
	ropts, err := retainOptions()
	if err != nil {
		return nil, err
	}
	out := &CycleResult{BackupDir: filepath.Join(e.Dir, "backup"), ReportFile: filepath.Join(e.Dir, "report.html")}
	res, err := cycle.Run(ctx, cycle.Options{
		Host: e.Server.Host, Storage: drv, BackupDir: out.BackupDir,
		Inventory: inventory.Options{Client: cli, Progress: progress, Logger: log},
		Policy:    audit.Policy{MaxBaseAge: audit.DefaultMaxBaseAge, Ban: []audit.Pattern{ban}},
		Backup:    backup.DefaultOptions(), GC: gcOpts, Logger: log, Now: e.Estate.Now, Retain: ropts,
	})
	out.Result = res
	if err != nil {
		return out, err
	}
	d := &report.Data{Registry: e.Server.Host, Generated: time.Now(), Inventory: res.Inventory, Audit: res.Audit, GC: res.GC}
	if res.Retain != nil {
		d.Retain = res.Retain.Plan
	}
	var page bytes.Buffer
	if err := d.WriteHTML(&page); err != nil {
		return out, err
	}
	if err := os.WriteFile(out.ReportFile, page.Bytes(), 0o644); err != nil {
		return out, err
	}
	for ref, want := range e.Estate.Tags() {
		r, err := name.ParseReference(e.Server.Host+"/"+ref, name.Insecure)
		if err == nil {
			err = pull.Pull(ctx, r, pull.Absent(e.Estate.AbsentChildren(r.Context().RepositoryStr(), want)...))
		}
		if err != nil {
			out.PullErrors = append(out.PullErrors, fmt.Sprintf("%s: %v", ref, err))
			continue
		}
		out.Pulled++
	}
	// The tags retention kept pull too: it removed tags, never what a kept
	// tag needs.
	if res.Retain != nil && res.Retain.Plan != nil {
		for _, t := range res.Retain.Plan.Tags {
			if t.Action != retain.Keep {
				continue
			}
			r, err := name.ParseReference(e.Server.Host+"/"+t.Repository+":"+t.Tag, name.Insecure)
			if err == nil {
				err = pull.Pull(ctx, r)
			}
			if err != nil {
				out.PullErrors = append(out.PullErrors, fmt.Sprintf("%s:%s: %v", t.Repository, t.Tag, err))
				continue
			}
			out.Pulled++
		}
	}
	sort.Strings(out.PullErrors)
	return out, nil
}
