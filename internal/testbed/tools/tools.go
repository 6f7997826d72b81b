// Package tools finds the programs the setup scripts install for the tests
// (MinIO, Azurite, the stock registry, the registry clients) and gives the
// servers the tests start a free port of 127.0.0.1.
package tools

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
)

// CacheDir is ${XDG_CACHE_HOME:-$HOME/.cache}/regkeeper/sub, where the
// scripts/setup-* scripts install what the tests need.
func CacheDir(sub string) string {
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, _ := os.UserHomeDir()
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "regkeeper", sub)
}

// Find returns a program: the path in the environment variable env when it
// is set (an error when that path does not exist), else cached when it is
// an executable file, else name on PATH, else notInstalled.
func Find(env, cached, name string, notInstalled error) (string, error) {
	if p := os.Getenv(env); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w", env, p, err)
		}
		return p, nil
	}
	if fi, err := os.Stat(cached); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
		return cached, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", notInstalled
}

// FreePort returns a port of 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
