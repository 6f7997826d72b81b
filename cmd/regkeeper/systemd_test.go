package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
)

const unitPath = "../../deploy/systemd/regkeeper-cycle.service"

// The shipped systemd unit, run for real as far as this machine allows.
// systemd-analyze verify checks the unit and the timer (with ExecStart
// pointing at the binary just built). With no systemd as PID 1 (a
// container), `systemd-run --user` cannot start it, so bwrap reproduces what
// matters to regkeeper: ProtectSystem=strict (everything read-only) with
// writes allowed only under ReadWritePaths, and the unit's own command line
// is run inside, against the demo estate. The paths of the unit are mapped
// under a temporary root (/var/backups/registry becomes ROOT/var/backups/
// registry, its parent read-only as on the host); PrivateTmp is a writable
// TMPDIR; ProtectHome hides /home and /root. scripts/setup-bubblewrap
// installs both tools; without them the test says so and skips.
func TestSystemdUnitSandbox(t *testing.T) {
	for _, tool := range []string{"systemd-analyze", "bwrap"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (scripts/setup-bubblewrap installs it): %v", tool, err)
		}
	}
	if out, err := exec.Command("bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "true").CombinedOutput(); err != nil {
		t.Skipf("bwrap cannot make a sandbox here (no user namespaces or privileges): %v: %s", err, bytes.TrimSpace(out))
	}
	bin := buildBinary(t)
	svc := unit(t, unitPath)["Service"]
	if got := svc["ProtectSystem"]; len(got) != 1 || got[0] != "strict" {
		t.Fatalf("ProtectSystem = %v; this test reproduces strict", got)
	}
	execStart := execArgs(t, svc["ExecStart"][0])

	// 1. systemd-analyze verify, with ExecStart on the built binary.
	units := t.TempDir()
	raw, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(units, "regkeeper-cycle.service"), bytes.Replace(raw, []byte(execStart[0]), []byte(bin), 1), 0o644)
	timer, _ := os.ReadFile("../../deploy/systemd/regkeeper-cycle.timer")
	os.WriteFile(filepath.Join(units, "regkeeper-cycle.timer"), timer, 0o644)
	verify := exec.Command("systemd-analyze", "verify", "regkeeper-cycle.service", "regkeeper-cycle.timer")
	verify.Dir = units
	if out, err := verify.CombinedOutput(); err != nil || strings.Contains(string(out), "regkeeper-cycle") {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	if out, err := exec.Command("systemd-run", "--user", "--wait", "--quiet", "true").CombinedOutput(); err == nil {
		t.Logf("systemd-run --user works here; the sandbox below stands in for it anyway")
	} else {
		t.Logf("no systemd to run the unit (systemd-run --user: %v: %s); reproducing its sandbox with bwrap", err, bytes.TrimSpace(out))
	}

	// 2. The unit's ReadWritePaths, under a temporary root; the registry's
	// storage in the first (/var/lib/registry), seeded with the estate.
	root := t.TempDir()
	var rw []string
	for _, line := range svc["ReadWritePaths"] {
		for _, p := range strings.Fields(line) {
			p = strings.TrimLeft(p, "-") // "-" marks an optional path
			if err := os.MkdirAll(root+p, 0o755); err != nil {
				t.Fatal(err)
			}
			rw = append(rw, p)
		}
	}
	srv, _ := regtest.Seeded(t, embedded.Options{Dir: root + "/var/lib/registry"})
	// distribution's own example config (in-memory blob-descriptor cache)
	// on that storage, as a stock registry host has it.
	exampleConfig := distributionExampleConfig(t, srv.Root)
	privateTmp := t.TempDir()
	restarted := filepath.Join(privateTmp, "registry-restarted")
	dockerConfig := t.TempDir()
	policy, _ := filepath.Abs("../../testdata/policy.yaml")

	// The unit's command line, its paths mapped: ReadWritePaths under root,
	// the registry configuration and the policy to the test's.
	argv := []string{bin}
	var backupDir string
	for i := 1; i < len(execStart); i++ {
		a := execStart[i]
		switch {
		case a == "registry.example.com":
			a = srv.Host
		case a == "/etc/docker/registry/config.yml":
			a = exampleConfig
		case a == "/etc/regkeeper/policy.yaml":
			a = policy
		case execStart[i-1] == "--restart-command":
			a = "touch " + restarted // systemctl has no systemd to ask here
		case strings.HasPrefix(a, "/"):
			mapped := false
			for _, p := range rw {
				if a == p || strings.HasPrefix(a, p+"/") {
					a, mapped = root+a, true
				}
			}
			if !mapped {
				t.Fatalf("ExecStart writes %s, outside ReadWritePaths %v", a, rw)
			}
		}
		if execStart[i-1] == "--backup" {
			backupDir = a
		}
		argv = append(argv, a)
	}
	argv = append(argv, "--insecure", "--grace", "0") // the demo registry is plain HTTP

	sandbox := func(extra ...string) (int, string) {
		args := []string{"--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--die-with-parent"}
		for _, hidden := range []string{"/home", "/root"} { // ProtectHome=true
			if _, err := os.Stat(hidden); err == nil {
				args = append(args, "--tmpfs", hidden)
			}
		}
		for _, p := range append(rw, privateTmp) {
			dir := p
			if p != privateTmp {
				dir = root + p
			}
			args = append(args, "--bind", dir, dir)
		}
		args = append(args, "--setenv", "TMPDIR", privateTmp, "--setenv", "DOCKER_CONFIG", dockerConfig, "--")
		cmd := exec.Command("bwrap", append(append(args, argv...), extra...)...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.Run()
		return cmd.ProcessState.ExitCode(), out.String()
	}

	// The sandbox is real: the backup's parent directory is read-only in
	// it, so a lock there (where cycle used to put it) cannot be taken.
	code, out := sandbox("--lock-file", filepath.Join(filepath.Dir(backupDir), ".registry.regkeeper-cycle.lock"))
	if code == 0 || !strings.Contains(out, "read-only file system") {
		t.Fatalf("a lock beside the backup directory: exit %d, want a read-only file system:\n%s", code, out)
	}

	// The unit as shipped: every step runs, gc included.
	code, out = sandbox()
	t.Logf("the unit's cycle in the sandbox: exit %d\n%s", code, out)
	if code != 0 {
		t.Fatalf("the unit's cycle exited %d, want 0", code)
	}
	if strings.Contains(out, "read-only file system") {
		t.Errorf("the cycle tried to write outside ReadWritePaths")
	}
	metricsFile := ""
	for i, a := range argv {
		if a == "--metrics-file" {
			metricsFile = argv[i+1]
		}
	}
	prom, err := os.ReadFile(metricsFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []string{"backup", "verify", "gc"} {
		if want := `regkeeper_cycle_step_success{step="` + step + `"} 1`; !strings.Contains(string(prom), want) {
			t.Errorf("metrics lack %s:\n%s", want, prom)
		}
	}
	if _, err := os.Stat(restarted); err != nil {
		t.Errorf("the unit's restart command did not run after gc: %v", err)
	}
	if _, err := os.Stat(filepath.Join(backupDir, ".regkeeper", "cycle.lock")); err != nil {
		t.Errorf("no lock inside the backup directory: %v", err)
	}
}
