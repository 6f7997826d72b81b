package kube

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/regkeeper/regkeeper/usage"
)

var now = time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)

const (
	d1 = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	d2 = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
	d4 = "sha256:4444444444444444444444444444444444444444444444444444444444444444"
	d5 = "sha256:5555555555555555555555555555555555555555555555555555555555555555"
)

// wantProd is what the fixture's cluster runs, as cluster "prod".
func wantProd() []usage.InUseImage {
	return []usage.InUseImage{
		{Ref: "busybox:1.36", Repo: "busybox", Tag: "1.36", Digest: d4, Where: []string{"cluster prod: Pod shop/web-7d9c6b5f4-x2k8p"}},
		{Ref: "localhost/agent", Host: "localhost", Repo: "agent", Tag: "latest", Where: []string{"cluster prod: DaemonSet kube-system/node-agent"}},
		{Ref: "registry.example.com/team/migrate@" + d1, Host: "registry.example.com", Repo: "team/migrate", Digest: d1, Where: []string{"cluster prod: Pod shop/web-7d9c6b5f4-x2k8p"}},
		{Ref: "registry.example.com/team/tools:2026.11", Host: "registry.example.com", Repo: "team/tools", Tag: "2026.11", Where: []string{"cluster prod: CronJob shop/report", "cluster prod: Job shop/backfill-1"}},
		{Ref: "registry.example.com/team/web:v1", Host: "registry.example.com", Repo: "team/web", Tag: "v1", Where: []string{"cluster prod: ReplicaSet shop/web-5f8b7c9d6 (rollback)"}},
		{Ref: "registry.example.com/team/web:v2", Host: "registry.example.com", Repo: "team/web", Tag: "v2", Where: []string{"cluster prod: Deployment shop/web"}},
		{Ref: "registry.example.com/team/web:v2", Host: "registry.example.com", Repo: "team/web", Tag: "v2", Digest: d2, Where: []string{"cluster prod: Pod shop/web-7d9c6b5f4-x2k8p"}},
		{Ref: "registry.example.com:5000/base/postgres:16", Host: "registry.example.com:5000", Repo: "base/postgres", Tag: "16", Where: []string{"cluster prod: StatefulSet shop/db"}},
	}
}

func TestFromKubectlJSON(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "kubectl-get-all.json"))
	if err != nil {
		t.Fatal(err)
	}
	snap, err := FromFile(data, "prod", now)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantProd(), snap.Images); diff != "" {
		t.Errorf("images (-want +got):\n%s", diff)
	}
}

// The same objects served by client-go's fake clientset give the same
// images as the kubectl JSON.
func TestCollectFakeClientset(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "kubectl-get-all.json"))
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Items []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(data, &list); err != nil {
		t.Fatal(err)
	}
	var objs []runtime.Object
	for _, raw := range list.Items {
		var tm typeMeta
		_ = json.Unmarshal(raw, &tm)
		var o runtime.Object
		switch tm.Kind {
		case "Pod":
			o = &corev1.Pod{}
		case "ReplicaSet":
			o = &appsv1.ReplicaSet{}
		case "Deployment":
			o = &appsv1.Deployment{}
		case "StatefulSet":
			o = &appsv1.StatefulSet{}
		case "DaemonSet":
			o = &appsv1.DaemonSet{}
		case "Job":
			o = &batchv1.Job{}
		case "CronJob":
			o = &batchv1.CronJob{}
		}
		if err := json.Unmarshal(raw, o); err != nil {
			t.Fatal(err)
		}
		objs = append(objs, o)
	}
	cs := fake.NewClientset(objs...)
	snap, err := Collect(context.Background(), cs, "prod", now)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Source != "cluster prod" || !snap.At.Equal(now) {
		t.Errorf("snapshot %s at %v", snap.Source, snap.At)
	}
	if diff := cmp.Diff(wantProd(), snap.Images); diff != "" {
		t.Errorf("images (-want +got):\n%s", diff)
	}
}

func TestFromImageList(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "images.txt"))
	if err != nil {
		t.Fatal(err)
	}
	snap, err := FromFile(data, "images.txt", now)
	if err != nil {
		t.Fatal(err)
	}
	want := []usage.InUseImage{
		{Ref: "registry.example.com/team/batch@" + d5, Host: "registry.example.com", Repo: "team/batch", Digest: d5, Where: []string{"images.txt line 3"}},
		{Ref: "registry.example.com/team/web:v1", Host: "registry.example.com", Repo: "team/web", Tag: "v1", Where: []string{"ecs prod/web"}},
	}
	if diff := cmp.Diff(want, snap.Images); diff != "" {
		t.Errorf("images (-want +got):\n%s", diff)
	}
}

func TestClustersFromKubeconfig(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "config")
	err := os.WriteFile(cfg, []byte(`apiVersion: v1
kind: Config
clusters:
- name: a
  cluster: {server: "https://a.example.com:6443"}
- name: b
  cluster: {server: "https://b.example.com:6443"}
users:
- name: u
  user: {token: "t"}
contexts:
- name: prod
  context: {cluster: a, user: u}
- name: staging
  context: {cluster: b, user: u}
current-context: prod
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		contexts []string
		want     []string
		err      bool
	}{
		{nil, []string{"prod", "staging"}, false},
		{[]string{"staging"}, []string{"staging"}, false},
		{[]string{"nope"}, nil, true},
	} {
		cs, err := Clusters(cfg, tc.contexts, false)
		if (err != nil) != tc.err {
			t.Errorf("%v: error %v", tc.contexts, err)
			continue
		}
		var got []string
		for _, c := range cs {
			got = append(got, c.Name)
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%v (-want +got):\n%s", tc.contexts, diff)
		}
	}
}
