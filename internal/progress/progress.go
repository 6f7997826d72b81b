// Package progress draws progress bars on stderr for long work, only when
// stderr is a terminal (or the user insists), and is silent in CI and pipes.
package progress

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// Mode is the --progress setting.
type Mode string

// The --progress values.
const (
	Auto   Mode = "auto"
	Always Mode = "always"
	Never  Mode = "never"
)

// ParseMode validates a --progress value.
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case Auto, Always, Never:
		return Mode(s), nil
	case "":
		return Auto, nil
	}
	return "", fmt.Errorf("unknown progress mode %q: want auto, always or never", s)
}

// Reporter makes bars. The zero value draws nothing.
type Reporter struct {
	w       io.Writer
	enabled bool
}

// New returns a Reporter that draws on w when mode allows: Always draws,
// Never does not, Auto draws only when w is a terminal.
func New(w io.Writer, mode Mode) *Reporter {
	enabled := false
	switch mode {
	case Always:
		enabled = true
	case Auto, "":
		if f, ok := w.(*os.File); ok {
			enabled = term.IsTerminal(int(f.Fd()))
		}
	}
	return &Reporter{w: w, enabled: enabled}
}

// Enabled reports whether bars are drawn.
func (r *Reporter) Enabled() bool { return r != nil && r.enabled }

// Bar is one progress bar. A nil *Bar is valid and does nothing, so library
// code can take a *Bar without checking.
type Bar struct {
	b *progressbar.ProgressBar
}

// Count starts a bar over n items (n < 0: unknown total).
func (r *Reporter) Count(n int64, desc string) *Bar {
	if !r.Enabled() {
		return nil
	}
	return &Bar{b: progressbar.NewOptions64(n,
		progressbar.OptionSetWriter(r.w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowCount(),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetRenderBlankState(true),
		progressbar.OptionSetPredictTime(true),
	)}
}

// Bytes starts a bar over n bytes (n < 0: unknown total).
func (r *Reporter) Bytes(n int64, desc string) *Bar {
	if !r.Enabled() {
		return nil
	}
	return &Bar{b: progressbar.NewOptions64(n,
		progressbar.OptionSetWriter(r.w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowBytes(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetRenderBlankState(true),
	)}
}

// Add advances the bar by n. Safe for concurrent use.
func (b *Bar) Add(n int64) {
	if b != nil {
		_ = b.b.Add64(n)
	}
}

// SetTotal changes the total, for walks that discover their size as they go.
func (b *Bar) SetTotal(n int64) {
	if b != nil {
		b.b.ChangeMax64(n)
	}
}

// Describe changes the bar's label.
func (b *Bar) Describe(s string) {
	if b != nil {
		b.b.Describe(s)
	}
}

// Done finishes and clears the bar.
func (b *Bar) Done() {
	if b != nil {
		_ = b.b.Finish()
		_ = b.b.Clear()
	}
}
