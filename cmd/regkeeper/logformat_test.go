package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
)

// TestLogFormatJSONFinalError is issue 24's "--log-format json leaves the
// final error in plain text": with json asked, every line on stderr is a
// JSON object, the final error included, and a registry behind htpasswd
// says "no credentials" when the Docker config has none, with no map dump.
func TestLogFormatJSONFinalError(t *testing.T) {
	srv := regtest.Registry(t, embedded.Options{Username: "ops", Password: "s3cret"})
	t.Setenv("DOCKER_CONFIG", t.TempDir()) // no credentials
	for _, tc := range []struct {
		name string
		argv []string
		code int
		want string
	}{
		{"credentials missing", []string{"audit", srv.Host, "--insecure", "--log-format", "json"}, 1, "no credentials for " + srv.Host},
		{"usage error", []string{"audit", srv.Host, "--log-format", "json", "--exit-code", "200"}, 2, "--exit-code must be between 0 and 125"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, tc.argv...)
			if code != tc.code {
				t.Errorf("exit %d, want %d: %s", code, tc.code, stderr)
			}
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			var last map[string]any
			for _, l := range lines {
				if err := json.Unmarshal([]byte(l), &last); err != nil {
					t.Fatalf("stderr line is not JSON: %q\n%s", l, stderr)
				}
			}
			if last["level"] != "ERROR" || !strings.Contains(last["error"].(string), tc.want) || last["command"] != "regkeeper audit" ||
				last["exit"] != float64(tc.code) || strings.Contains(stderr, "map[") {
				t.Errorf("final line %v, want level ERROR, command, exit %d and an error with %q", last, tc.code, tc.want)
			}
		})
	}
}
