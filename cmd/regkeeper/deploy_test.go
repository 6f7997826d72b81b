package main

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
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

func TestDeployKubernetes(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/kubernetes/cronjob.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cj struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Spec       struct {
			Schedule          string `yaml:"schedule"`
			ConcurrencyPolicy string `yaml:"concurrencyPolicy"`
			JobTemplate       struct {
				Spec struct {
					Template struct {
						Spec struct {
							RestartPolicy string `yaml:"restartPolicy"`
							Containers    []struct {
								Image        string   `yaml:"image"`
								Args         []string `yaml:"args"`
								VolumeMounts []struct {
									Name      string `yaml:"name"`
									MountPath string `yaml:"mountPath"`
								} `yaml:"volumeMounts"`
							} `yaml:"containers"`
							Volumes []struct {
								Name string `yaml:"name"`
							} `yaml:"volumes"`
						} `yaml:"spec"`
					} `yaml:"template"`
				} `yaml:"spec"`
			} `yaml:"jobTemplate"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(raw, &cj); err != nil {
		t.Fatalf("cronjob.yaml: %v", err)
	}
	if cj.APIVersion != "batch/v1" || cj.Kind != "CronJob" || len(strings.Fields(cj.Spec.Schedule)) != 5 || cj.Spec.ConcurrencyPolicy != "Forbid" {
		t.Errorf("cronjob: %s %s schedule %q concurrency %q", cj.APIVersion, cj.Kind, cj.Spec.Schedule, cj.Spec.ConcurrencyPolicy)
	}
	pod := cj.Spec.JobTemplate.Spec.Template.Spec
	if len(pod.Containers) != 1 || pod.RestartPolicy != "Never" {
		t.Fatalf("pod: %+v", pod)
	}
	checkArgs(t, "cronjob.yaml", pod.Containers[0].Args)
	volumes := map[string]bool{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = true
	}
	for _, m := range pod.Containers[0].VolumeMounts {
		if !volumes[m.Name] {
			t.Errorf("volumeMount %q has no volume", m.Name)
		}
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
	argv := strings.Fields(svc["Service"]["ExecStart"][0])
	if filepath.Base(argv[0]) != "regkeeper" {
		t.Errorf("ExecStart runs %s", argv[0])
	}
	checkArgs(t, "regkeeper-cycle.service", argv[1:])
	if timer["Timer"]["OnCalendar"] == nil || timer["Timer"]["Unit"][0] != "regkeeper-cycle.service" || timer["Install"]["WantedBy"][0] != "timers.target" {
		t.Errorf("timer: %v", timer)
	}
}
