// Package progress draws progress bars on stderr for long work, only when
// stderr is a terminal (or the user insists), and is silent in CI and pipes.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
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

	// A growing bar (Growing) keeps its own total and count, so that the
	// drawn bar never reaches its end before Done: progressbar finishes a
	// bar for good when its count meets its total.
	grow        bool
	mu          sync.Mutex
	total, done int64
	w           *widthWriter
}

// widthWriter passes a bar's frames on and remembers the widest, so that
// Done can blank the line: progressbar does not count the width of the
// frame it draws on finishing.
type widthWriter struct {
	w        io.Writer
	cur, max int
}

func (w *widthWriter) Write(p []byte) (int, error) {
	for _, r := range string(p) {
		switch r {
		case '\r', '\n':
			w.cur = 0
		default:
			w.cur++
			w.max = max(w.max, w.cur)
		}
	}
	return w.w.Write(p)
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
	return &Bar{b: progressbar.NewOptions64(n, bytesOptions(r.w, desc, true)...)}
}

// Growing starts a bar over bytes whose total is learnt as the work goes
// (Grow): a backup learns what it has to write as it reads manifests. The
// bar shows bytes done of the total known so far, the throughput and the
// time left at that rate; Done draws the last state as it is (complete or
// not) and clears it.
func (r *Reporter) Growing(desc string) *Bar {
	if !r.Enabled() {
		return nil
	}
	w := &widthWriter{w: r.w}
	return &Bar{grow: true, w: w, b: progressbar.NewOptions64(-1, bytesOptions(w, desc, false)...)}
}

// bytesOptions draw "desc  40% |====      | (1.2/3.0 MiB, 800 KiB/s) [1s:2s]":
// bytes done of the total, throughput, time spent and time left.
func bytesOptions(w io.Writer, desc string, clear bool) []progressbar.Option {
	opts := []progressbar.Option{
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowCount(),
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionUseIECUnits(true),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100 * time.Millisecond),
		progressbar.OptionSetRenderBlankState(true),
	}
	if clear {
		opts = append(opts, progressbar.OptionClearOnFinish())
	}
	return opts
}

// Grow adds n to the total of a growing bar. Safe for concurrent use.
func (b *Bar) Grow(n int64) {
	if b == nil || !b.grow {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.total += n
	b.b.ChangeMax64(max(b.total, b.done) + 1)
}

// Add advances the bar by n. Safe for concurrent use.
func (b *Bar) Add(n int64) {
	if b == nil {
		return
	}
	if !b.grow {
		_ = b.b.Add64(n)
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.done += n
	if b.done > b.total {
		// More than was announced (a blob fetched again): keep the
		// drawn total ahead of the count until Done.
		b.b.ChangeMax64(b.done + 1)
	}
	_ = b.b.Add64(n)
}

// state is the bar's count and total as drawn, for tests.
func (b *Bar) state() (done, total int64) {
	s := b.b.State()
	return s.CurrentNum, s.Max
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

// Done finishes and clears the bar. A growing bar is drawn once more at
// its true total first (not filled up when the work did not finish).
func (b *Bar) Done() {
	if b == nil {
		return
	}
	if !b.grow {
		_ = b.b.Finish()
		_ = b.b.Clear()
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.total > 0 {
		b.b.ChangeMax64(b.total)
	}
	_ = b.b.Exit()
	fmt.Fprintf(b.w, "\r%s\r", strings.Repeat(" ", b.w.max))
}
