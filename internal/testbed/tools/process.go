package tools

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"time"
)

// Process is a server a test runs (MinIO, Azurite), its output in a log
// file that errors quote the end of.
type Process struct {
	name   string
	cmd    *exec.Cmd
	log    *os.File
	exited chan error
}

// StartProcess starts cmd with its output going to the file logPath; name
// ("minio") is what messages call it.
func StartProcess(name string, cmd *exec.Cmd, logPath string) (*Process, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &Process{name: name, cmd: cmd, log: logf, exited: make(chan error, 1)}
	go func() { p.exited <- cmd.Wait() }()
	return p, nil
}

// WaitReady calls ready every 200 ms until it succeeds, each call given
// 10 seconds. The process is stopped and an error quoting its log returned
// when it exits, ctx ends, or wait has passed; what is waited for
// ("serve the S3 API at ...") says so.
func (p *Process) WaitReady(ctx context.Context, wait time.Duration, what string, ready func(context.Context) error) error {
	deadline := time.Now().Add(wait)
	for {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := ready(actx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case xerr := <-p.exited:
			tail := p.LogTail()
			p.log.Close()
			return fmt.Errorf("%s exited (%v):%s", p.name, xerr, tail)
		case <-ctx.Done():
			p.Close()
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.Close()
			return fmt.Errorf("%s does not %s after %v: %w%s", p.name, what, wait, err, p.LogTail())
		}
	}
}

// LogTail is the end of the process's log, for an error message.
func (p *Process) LogTail() string {
	b, err := os.ReadFile(p.log.Name())
	if err != nil || len(b) == 0 {
		return ""
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return "\n" + p.name + " log (" + p.log.Name() + "):\n" + string(b)
}

// Close stops the process.
func (p *Process) Close() error {
	if p.cmd.Process != nil {
		_ = p.cmd.Process.Kill()
	}
	return p.log.Close()
}
