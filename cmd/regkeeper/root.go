//go:generate go test -run ^TestCLIDocs$ -update .

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/regkeeper/regkeeper/internal/client"
	"github.com/regkeeper/regkeeper/internal/output"
	"github.com/regkeeper/regkeeper/internal/progress"
)

// Exit codes of the design: 0 success, 1 error, 2 usage error; audit
// --exit-code N returns N when there are findings.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// interrupted is the cause of the context's cancellation when a signal
// stopped the run: the command unwinds (locks released, files closed) and
// the exit code is 128 + the signal's number, as shells expect (130 after
// SIGINT, 143 after SIGTERM).
type interrupted struct{ sig syscall.Signal }

func (i interrupted) Error() string {
	switch i.sig {
	case syscall.SIGINT:
		return "interrupted (SIGINT)"
	case syscall.SIGTERM:
		return "interrupted (SIGTERM)"
	}
	return "interrupted by " + i.sig.String()
}

// exitCodeError carries an exit code other than 1 out of a command. When
// silent, the command has already said what it had to say.
type exitCodeError struct {
	code   int
	err    error
	silent bool
}

func (e *exitCodeError) Error() string { return e.err.Error() }
func (e *exitCodeError) Unwrap() error { return e.err }

// usageError marks bad command-line input: exit 2.
func usageError(format string, args ...any) error {
	return &exitCodeError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// errPartial is returned when a command finished its walk but some part of it
// failed; the failures are in the output already.
var errPartial = errors.New("completed with errors (see above)")

// globalOptions are the flags every command shares.
type globalOptions struct {
	insecure  bool
	jobs      int
	output    string
	progress  string
	verbose   int
	logFormat string
}

func (g *globalOptions) register(cmd *cobra.Command) {
	f := cmd.PersistentFlags()
	f.BoolVar(&g.insecure, "insecure", false, "allow plain HTTP and unverified TLS to the registry")
	f.IntVar(&g.jobs, "jobs", client.DefaultJobs, "concurrent requests or storage operations")
	f.StringVar(&g.progress, "progress", "auto", "progress bars on stderr: auto (only on a terminal), always or never")
	f.CountVarP(&g.verbose, "verbose", "v", "more logging on stderr (repeat for debug)")
	f.StringVar(&g.logFormat, "log-format", "text", "log format on stderr: text or json")
}

// ownOutput is the annotation of a command that checks -o itself (report:
// html or markdown).
const ownOutput = "regkeeper/own-output"

// registerOutput declares -o on a command that writes the common formats.
// -o is declared per command, not on the root, so that each command's help
// offers only the formats it can write.
func (g *globalOptions) registerOutput(cmd *cobra.Command) {
	g.output = "table"
	cmd.Flags().StringVarP(&g.output, "output", "o", g.output, "output format: table, json, csv or markdown")
}

// validate checks the shared flags once, before any command runs.
func (g *globalOptions) validate(cmd *cobra.Command) error {
	if g.jobs < 1 {
		return usageError("--jobs must be at least 1, got %d", g.jobs)
	}
	if _, own := cmd.Annotations[ownOutput]; own || cmd.Flags().Lookup("output") == nil {
		// checked by the command, or none
	} else if _, err := output.ParseFormat(g.output); err != nil {
		return usageError("-o: %v", err)
	}
	if _, err := progress.ParseMode(g.progress); err != nil {
		return usageError("--progress: %v", err)
	}
	if g.logFormat != "text" && g.logFormat != "json" {
		return usageError("--log-format: want text or json, got %q", g.logFormat)
	}
	return nil
}

func (g *globalOptions) format() output.Format {
	f, _ := output.ParseFormat(g.output)
	return f
}

func (g *globalOptions) client(log *slog.Logger) client.Options {
	return client.Options{Insecure: g.insecure, Jobs: g.jobs, Logger: log}
}

func (g *globalOptions) reporter(cmd *cobra.Command) *progress.Reporter {
	mode, _ := progress.ParseMode(g.progress)
	return progress.New(cmd.ErrOrStderr(), mode)
}

// logger logs warnings by default, info with -v, debug with -vv.
func (g *globalOptions) logger(cmd *cobra.Command) *slog.Logger {
	level := slog.LevelWarn
	switch {
	case g.verbose >= 2:
		level = slog.LevelDebug
	case g.verbose == 1:
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if g.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), opts))
	}
	return slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), opts))
}

// filterOptions are --repo and --tag, for the commands that walk images.
type filterOptions struct {
	repo, tag string
}

func (f *filterOptions) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.repo, "repo", "", "only repositories matching this regular expression")
	cmd.Flags().StringVar(&f.tag, "tag", "", "only tags matching this regular expression")
}

// compile returns the filters as regular expressions (nil when unset).
func (f *filterOptions) compile() (repo, tag *regexp.Regexp, err error) {
	if f.repo != "" {
		if repo, err = regexp.Compile(f.repo); err != nil {
			return nil, nil, usageError("--repo: invalid regular expression: %v", err)
		}
	}
	if f.tag != "" {
		if tag, err = regexp.Compile(f.tag); err != nil {
			return nil, nil, usageError("--tag: invalid regular expression: %v", err)
		}
	}
	return repo, tag, nil
}

// arg names a positional argument and says what it is, for the message
// when it is missing: "regkeeper backup: missing DIR (where the backup goes)".
type arg struct{ name, what string }

// The arguments the commands take.
var (
	argRegistry   = arg{"REGISTRY", "the registry's host, e.g. registry.example.com or 127.0.0.1:5000"}
	argBackupDir  = arg{"DIR", "where the backup goes"}
	argRestoreDir = arg{"DIR", "the backup to restore"}
	argVerifyDir  = arg{"DIR", "the backup to verify"}
	argTarget     = arg{"REGISTRY", "the registry to push to"}
)

// positional is the one argument check of every command: exactly the
// arguments named, each missing one named with what it is, and a usage
// error (exit 2) otherwise.
func positional(want ...arg) cobra.PositionalArgs {
	return func(cmd *cobra.Command, got []string) error {
		if len(got) < len(want) {
			missing := want[len(got):]
			var parts []string
			for _, a := range missing {
				parts = append(parts, fmt.Sprintf("%s (%s)", a.name, a.what))
			}
			return &exitCodeError{code: exitUsage, err: fmt.Errorf("missing %s", strings.Join(parts, " and "))}
		}
		if len(got) > len(want) {
			var names []string
			for _, a := range want {
				names = append(names, a.name)
			}
			takes := "no arguments"
			if len(names) > 0 {
				takes = strings.Join(names, " ")
			}
			return &exitCodeError{code: exitUsage, err: fmt.Errorf("unexpected argument %q (%s takes %s)", got[len(want)], cmd.Name(), takes)}
		}
		return nil
	}
}

func newRootCmd() *cobra.Command {
	g := &globalOptions{}
	root := &cobra.Command{
		Use:   "regkeeper",
		Short: "Keep a container registry healthy: inventory, audit, backup, gc",
		Long: `regkeeper keeps a container registry healthy from one weekly cron:
an inventory of every repository and tag, an audit of base images, a
deduplicated backup that restores digest for digest, and a garbage collector
that deletes what tag replacement left behind, on the registry's own storage.`,
		Example: `  # try everything on an embedded registry seeded with a sample estate
  regkeeper demo

  # every tag of a registry, as JSON
  regkeeper inventory registry.example.com -o json`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		CompletionOptions: cobra.CompletionOptions{HiddenDefaultCmd: true},
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return g.validate(cmd)
		},
	}
	g.register(root)
	root.Version = versionString()
	root.SetVersionTemplate(versionLine()) // plain text: the same line as `regkeeper version`
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &exitCodeError{code: exitUsage, err: err}
	})
	root.AddCommand(
		newVersionCmd(),
		newDemoCmd(g),
		newInventoryCmd(g),
		newAuditCmd(g),
		newReportCmd(g),
		newCycleCmd(g),
		newBackupCmd(g),
		newRestoreCmd(g),
		newVerifyCmd(g),
		newGCCmd(g),
		newRetainCmd(g),
		newUsageCmd(g),
	)
	return root
}

// run executes the command line and returns the exit code.
func run(ctx context.Context, argv []string, stdout, stderr io.Writer) int {
	client.Version = versionString()
	root := newRootCmd()
	root.SetArgs(argv)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	who := "regkeeper"
	if cmd != nil {
		who = cmd.CommandPath()
	}
	// The last word goes through the JSON logger when --log-format json
	// was asked, so that every line on stderr is a JSON object.
	say := func(err error, code int, hint string) {
		if lf := root.PersistentFlags().Lookup("log-format"); lf != nil && lf.Value.String() == "json" {
			attrs := []any{"command", who, "error", err.Error(), "exit", code}
			if hint != "" {
				attrs = append(attrs, "hint", hint)
			}
			slog.New(slog.NewJSONHandler(stderr, nil)).Error(who+": "+err.Error(), attrs...)
			return
		}
		fmt.Fprintf(stderr, "%s: %v\n", who, err)
		if hint != "" {
			fmt.Fprintln(stderr, hint)
		}
	}
	var sig interrupted
	if errors.As(context.Cause(ctx), &sig) {
		say(sig, 128+int(sig.sig), "")
		return 128 + int(sig.sig)
	}
	if err == nil {
		return exitOK
	}
	code := exitError
	var ece *exitCodeError
	switch {
	case errors.As(err, &ece):
		code = ece.code
		if ece.silent {
			return code
		}
	case strings.HasPrefix(err.Error(), "unknown command"), strings.HasPrefix(err.Error(), "unknown flag"):
		code = exitUsage
	}
	hint := ""
	if code == exitUsage {
		hint = fmt.Sprintf("Run '%s --help' for usage.", who)
	}
	say(err, code, hint)
	return code
}
