package main

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
)

// checkArgs parses a command line of regkeeper with the real command tree:
// the subcommand exists, every flag is known and valid, the arguments fit.
func checkArgs(t *testing.T, where string, argv []string) {
	t.Helper()
	cmd, rest, err := newRootCmd().Find(argv)
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	if err := cmd.ParseFlags(rest); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	if cmd.Args != nil {
		if err := cmd.Args(cmd, cmd.Flags().Args()); err != nil {
			t.Errorf("%s: %v", where, err)
		}
	}
	for _, required := range []string{"config", "backup"} {
		if !cmd.Flags().Changed(required) {
			t.Errorf("%s: runs %s without --%s", where, cmd.Name(), required)
		}
	}
}

// The Kubernetes manifests, each decoded strictly into its API type (an
// unknown or misspelt field fails): the CronJob's command line against the
// real command's flags, its volumes, and its restart command against the
// RBAC that allows it (kubectl rollout restart: get and patch of that one
// Deployment, in that namespace, for the CronJob's ServiceAccount), and
// the image's kubectl.
func TestDeployKubernetes(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/kubernetes/cronjob.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var (
		cj       *batchv1.CronJob
		sa       *corev1.ServiceAccount
		roles    = map[string]*rbacv1.Role{}
		bindings []*rbacv1.RoleBinding
	)
	for i, doc := range strings.Split(string(raw), "\n---\n") {
		var meta struct{ Kind string }
		if err := sigsyaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		var obj any
		switch meta.Kind {
		case "CronJob":
			cj = &batchv1.CronJob{}
			obj = cj
		case "ServiceAccount":
			sa = &corev1.ServiceAccount{}
			obj = sa
		case "Role":
			r := &rbacv1.Role{}
			obj = r
		case "RoleBinding":
			rb := &rbacv1.RoleBinding{}
			bindings = append(bindings, rb)
			obj = rb
		default:
			t.Fatalf("document %d: kind %q", i, meta.Kind)
		}
		if err := sigsyaml.UnmarshalStrict([]byte(doc), obj); err != nil {
			t.Fatalf("document %d (%s): %v", i, meta.Kind, err)
		}
		if r, ok := obj.(*rbacv1.Role); ok {
			roles[r.Name] = r
		}
	}
	if cj == nil || sa == nil {
		t.Fatalf("no CronJob or no ServiceAccount")
	}
	if cj.APIVersion != "batch/v1" || len(strings.Fields(cj.Spec.Schedule)) != 5 || cj.Spec.ConcurrencyPolicy != batchv1.ForbidConcurrent {
		t.Errorf("cronjob: %s schedule %q concurrency %q", cj.APIVersion, cj.Spec.Schedule, cj.Spec.ConcurrencyPolicy)
	}
	pod := cj.Spec.JobTemplate.Spec.Template.Spec
	if len(pod.Containers) != 1 || pod.RestartPolicy != corev1.RestartPolicyNever {
		t.Fatalf("pod: %+v", pod)
	}
	args := pod.Containers[0].Args
	checkArgs(t, "cronjob.yaml", args)
	volumes := map[string]bool{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = true
	}
	for _, m := range pod.Containers[0].VolumeMounts {
		if !volumes[m.Name] {
			t.Errorf("volumeMount %q has no volume", m.Name)
		}
	}

	// The restart command and what allows it.
	var restart []string
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--restart-command="); ok {
			restart = strings.Fields(v)
		}
	}
	if len(restart) < 4 || restart[0] != "kubectl" || restart[1] != "rollout" || restart[2] != "restart" {
		t.Fatalf("restart command %q: want kubectl rollout restart deployment/NAME --namespace=NS", restart)
	}
	deployment, ns := "", cj.Namespace
	for _, a := range restart[3:] {
		if d, ok := strings.CutPrefix(a, "deployment/"); ok {
			deployment = d
		}
		if n, ok := strings.CutPrefix(a, "--namespace="); ok {
			ns = n
		}
	}
	if pod.ServiceAccountName != sa.Name || sa.Namespace != cj.Namespace {
		t.Errorf("the pod runs as %q; the ServiceAccount is %s/%s", pod.ServiceAccountName, sa.Namespace, sa.Name)
	}
	allowed := false
	for _, rb := range bindings {
		role := roles[rb.RoleRef.Name]
		if role == nil || rb.RoleRef.Kind != "Role" || rb.Namespace != ns || role.Namespace != ns {
			continue
		}
		bound := false
		for _, s := range rb.Subjects {
			bound = bound || (s.Kind == "ServiceAccount" && s.Name == sa.Name && s.Namespace == sa.Namespace)
		}
		for _, rule := range role.Rules {
			if bound && slices.Contains(rule.APIGroups, "apps") && slices.Contains(rule.Resources, "deployments") &&
				slices.Contains(rule.Verbs, "get") && slices.Contains(rule.Verbs, "patch") &&
				(len(rule.ResourceNames) == 0 || slices.Contains(rule.ResourceNames, deployment)) {
				allowed = true
			}
		}
	}
	if !allowed {
		t.Errorf("no Role bound to ServiceAccount %s allows get and patch of deployment %s in %s (kubectl rollout restart)", sa.Name, deployment, ns)
	}
	docker, err := os.ReadFile("../../deploy/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(docker), "/usr/local/bin/kubectl") {
		t.Errorf("the image has no kubectl for the restart command")
	}
}

// unit reads a systemd unit file into section -> key -> values.
func unit(t *testing.T, path string) map[string]map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := map[string]map[string][]string{}
	var section string
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" || strings.HasSuffix(line, "\\") {
				t.Fatalf("%s:%d: not a key=value line in a section: %q", filepath.Base(path), n, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

func TestDeploySystemd(t *testing.T) {
	svc := unit(t, "../../deploy/systemd/regkeeper-cycle.service")
	timer := unit(t, "../../deploy/systemd/regkeeper-cycle.timer")
	if svc["Service"]["Type"][0] != "oneshot" || len(svc["Service"]["ExecStart"]) != 1 {
		t.Fatalf("service: %v", svc["Service"])
	}
	argv := execArgs(t, svc["Service"]["ExecStart"][0])
	if filepath.Base(argv[0]) != "regkeeper" {
		t.Errorf("ExecStart runs %s", argv[0])
	}
	checkArgs(t, "regkeeper-cycle.service", argv[1:])
	if timer["Timer"]["OnCalendar"] == nil || timer["Timer"]["Unit"][0] != "regkeeper-cycle.service" || timer["Install"]["WantedBy"][0] != "timers.target" {
		t.Errorf("timer: %v", timer)
	}
}

// execArgs splits a systemd ExecStart line as systemd does for what the
// unit uses: on spaces, a "double-quoted" word kept whole.
func execArgs(t *testing.T, line string) []string {
	t.Helper()
	var args []string
	for line = strings.TrimSpace(line); line != ""; line = strings.TrimSpace(line) {
		if line[0] == '"' {
			end := strings.IndexByte(line[1:], '"')
			if end < 0 {
				t.Fatalf("unterminated quote in %q", line)
			}
			args, line = append(args, line[1:end+1]), line[end+2:]
			continue
		}
		word, rest, _ := strings.Cut(line, " ")
		args, line = append(args, word), rest
	}
	return args
}

// The shipped unit's command line, run as it stands against distribution's
// own example config.yml (read from the module cache: an in-memory
// blob-descriptor cache), its paths mapped under a temporary root and its
// restart command replaced by one that leaves a mark: every step runs, gc
// included, and the registry is restarted after gc. With the unit's
// command line of before (no way out of the in-memory cache) this backed
// up the whole registry and exited 5 at gc.
func TestSystemdUnitExampleConfig(t *testing.T) {
	svc := unit(t, "../../deploy/systemd/regkeeper-cycle.service")["Service"]
	execStart := execArgs(t, svc["ExecStart"][0])
	root := t.TempDir()
	srv, e := regtest.Seeded(t, embedded.Options{Dir: filepath.Join(root, "var/lib/registry")})
	cfg := distributionExampleConfig(t, srv.Root)
	policy, _ := filepath.Abs("../../testdata/policy.yaml")
	marker := filepath.Join(root, "restarted")
	var argv []string
	var restart string
	for i := 1; i < len(execStart); i++ {
		a := execStart[i]
		switch {
		case a == "registry.example.com":
			a = srv.Host
		case a == "/etc/docker/registry/config.yml":
			a = cfg
		case a == "/etc/regkeeper/policy.yaml":
			a = policy
		case execStart[i-1] == "--restart-command":
			restart, a = a, "touch "+marker
		case strings.HasPrefix(a, "/"):
			a = filepath.Join(root, a)
			os.MkdirAll(filepath.Dir(a), 0o755)
		}
		argv = append(argv, a)
	}
	if restart == "" {
		t.Fatalf("the unit's cycle has no --restart-command, and distribution's example config caches blob descriptors in memory: %v", execStart)
	}
	if !strings.Contains(restart, "systemctl") || !strings.Contains(restart, "docker-registry") {
		t.Errorf("restart command %q: want systemctl restarting the registry's unit", restart)
	}
	argv = append(argv, "--insecure", "--grace", "0", "--settle", "100ms", "--log-format", "text")

	code, out, stderr := runCLI(t, append(argv, "--check")...)
	if code != 0 {
		t.Errorf("the unit's cycle --check: exit %d:\n%s\n%s", code, out, stderr)
	}
	code, out, stderr = runCLI(t, argv...)
	t.Logf("the unit's cycle on the example config: exit %d\n%s", code, out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, step := range []string{"check", "backup", "verify", "gc"} {
		if !strings.Contains(out, step+strings.Repeat(" ", 11-len(step))+"ok") {
			t.Errorf("step %s not ok", step)
		}
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("the restart command did not run after gc: %v", err)
	}
	regtest.PullAll(t, srv.Host, e)
}
