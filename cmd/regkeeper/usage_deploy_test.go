package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// parseArgs parses a regkeeper command line with the real command tree.
func parseArgs(t *testing.T, where string, argv []string) map[string]string {
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
	got := map[string]string{"command": cmd.CommandPath()}
	for _, f := range []string{"db", "token-file", "listen"} {
		if fl := cmd.Flags().Lookup(f); fl != nil && fl.Changed {
			got[f] = fl.Value.String()
		}
	}
	return got
}

func TestDeployUsageSystemd(t *testing.T) {
	svc := unit(t, "../../deploy/systemd/regkeeper-usage.service")
	argv := strings.Fields(svc["Service"]["ExecStart"][0])
	if filepath.Base(argv[0]) != "regkeeper" || svc["Service"]["Restart"][0] != "always" {
		t.Fatalf("service: %v", svc["Service"])
	}
	got := parseArgs(t, "regkeeper-usage.service", argv[1:])
	if got["command"] != "regkeeper usage serve" || got["db"] == "" || got["token-file"] == "" || !strings.HasPrefix(got["listen"], "127.0.0.1:") {
		t.Errorf("ExecStart: %v", got)
	}
	if !strings.HasPrefix(got["db"], svc["Service"]["ReadWritePaths"][0]) {
		t.Errorf("the ledger %s is outside ReadWritePaths %v", got["db"], svc["Service"]["ReadWritePaths"])
	}
}

func TestDeployUsageKubernetes(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/kubernetes/usage.yaml")
	if err != nil {
		t.Fatal(err)
	}
	type port struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
		Port          int    `yaml:"port"`
		TargetPort    string `yaml:"targetPort"`
	}
	type doc struct {
		Kind     string `yaml:"kind"`
		Metadata struct {
			Name string `yaml:"name"`
		} `yaml:"metadata"`
		Spec struct {
			Replicas *int `yaml:"replicas"`
			Strategy struct {
				Type string `yaml:"type"`
			} `yaml:"strategy"`
			Selector map[string]any `yaml:"selector"`
			Ports    []port         `yaml:"ports"`
			Template struct {
				Spec struct {
					Containers []struct {
						Args         []string `yaml:"args"`
						Ports        []port   `yaml:"ports"`
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
	}
	docs := map[string]doc{}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	for {
		var d doc
		if err := dec.Decode(&d); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("usage.yaml: %v", err)
		}
		docs[d.Kind] = d
	}
	dep, svc := docs["Deployment"], docs["Service"]
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 1 || dep.Spec.Strategy.Type != "Recreate" {
		t.Errorf("deployment: one replica, Recreate (one writer of the ledger): %+v", dep.Spec)
	}
	if _, ok := docs["PersistentVolumeClaim"]; !ok {
		t.Error("no PersistentVolumeClaim for the ledger")
	}
	ctr := dep.Spec.Template.Spec.Containers[0]
	got := parseArgs(t, "usage.yaml", ctr.Args)
	if got["command"] != "regkeeper usage serve" || got["db"] == "" || got["token-file"] == "" {
		t.Errorf("args: %v", got)
	}
	volumes := map[string]bool{}
	for _, v := range dep.Spec.Template.Spec.Volumes {
		volumes[v.Name] = true
	}
	mounted := false
	for _, m := range ctr.VolumeMounts {
		if !volumes[m.Name] {
			t.Errorf("volumeMount %q has no volume", m.Name)
		}
		mounted = mounted || strings.HasPrefix(got["db"], m.MountPath+"/")
	}
	if !mounted {
		t.Errorf("the ledger %s is on no volume", got["db"])
	}
	if len(svc.Spec.Ports) != 1 || len(ctr.Ports) != 1 || svc.Spec.Ports[0].TargetPort != ctr.Ports[0].Name || !strings.HasSuffix(got["listen"], ":5050") {
		t.Errorf("service ports %+v, container ports %+v, listen %s", svc.Spec.Ports, ctr.Ports, got["listen"])
	}
}
