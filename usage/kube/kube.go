// Package kube reads which images Kubernetes clusters run or keep for
// rollback, for the usage ledger: Pods (containers, init and ephemeral
// containers, with the digests their status reports), ReplicaSets (those
// scaled to zero are a Deployment's rollback targets), Deployments,
// StatefulSets, DaemonSets, Jobs and CronJobs. It reads through client-go
// (kubeconfig contexts or in-cluster), from the JSON of `kubectl get
// pods,rs,deploy,sts,ds,jobs,cronjobs -A -o json`, or from a plain list of
// image references.
package kube

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/regkeeper/regkeeper/usage"
)

// ParseRef splits an image reference as a container spec writes it:
// host (when the first path component has a dot or a colon, or is
// localhost), repository path, tag and digest. Docker Hub's short names are
// kept as written ("nginx" is repo "nginx", no host).
func ParseRef(ref string) (host, repo, tag, digest string) {
	rest := ref
	if i := strings.Index(rest, "@"); i >= 0 {
		rest, digest = rest[:i], rest[i+1:]
	}
	if i := strings.LastIndex(rest, ":"); i >= 0 && !strings.Contains(rest[i:], "/") {
		rest, tag = rest[:i], rest[i+1:]
	}
	if first, after, ok := strings.Cut(rest, "/"); ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		host, rest = first, after
	}
	if tag == "" && digest == "" {
		tag = "latest"
	}
	return host, rest, tag, digest
}

// digestOf reads the registry digest from a container status imageID
// ("docker-pullable://reg/app@sha256:…", "reg/app@sha256:…"); a bare
// "sha256:…" is the local image id, not a registry digest.
func digestOf(imageID string) string {
	if i := strings.LastIndex(imageID, "@"); i >= 0 {
		return imageID[i+1:]
	}
	return ""
}

// collector gathers images, merging where lists per reference and digest.
type collector struct {
	cluster string
	images  map[string]*usage.InUseImage
}

func newCollector(cluster string) *collector {
	return &collector{cluster: cluster, images: map[string]*usage.InUseImage{}}
}

func (c *collector) add(ref, digest, where string) {
	if ref == "" {
		return
	}
	host, repo, tag, d := ParseRef(ref)
	if d == "" {
		d = digest
	}
	k := ref + "\x00" + d
	im := c.images[k]
	if im == nil {
		im = &usage.InUseImage{Ref: ref, Host: host, Repo: repo, Tag: tag, Digest: d}
		c.images[k] = im
	}
	w := where
	if c.cluster != "" {
		w = "cluster " + c.cluster + ": " + where
	}
	for _, e := range im.Where {
		if e == w {
			return
		}
	}
	im.Where = append(im.Where, w)
}

func (c *collector) list() []usage.InUseImage {
	out := make([]usage.InUseImage, 0, len(c.images))
	for _, im := range c.images {
		sort.Strings(im.Where)
		out = append(out, *im)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Ref != out[j].Ref {
			return out[i].Ref < out[j].Ref
		}
		return out[i].Digest < out[j].Digest
	})
	return out
}

func (c *collector) podSpec(spec *corev1.PodSpec, where string) {
	for _, ct := range spec.InitContainers {
		c.add(ct.Image, "", where)
	}
	for _, ct := range spec.Containers {
		c.add(ct.Image, "", where)
	}
	for _, ct := range spec.EphemeralContainers {
		c.add(ct.Image, "", where)
	}
}

func (c *collector) pod(p *corev1.Pod) {
	where := "Pod " + p.Namespace + "/" + p.Name
	digests := map[string]string{}
	for _, list := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses, p.Status.EphemeralContainerStatuses} {
		for _, st := range list {
			digests[st.Name] = digestOf(st.ImageID)
		}
	}
	add := func(name, image string) { c.add(image, digests[name], where) }
	for _, ct := range p.Spec.InitContainers {
		add(ct.Name, ct.Image)
	}
	for _, ct := range p.Spec.Containers {
		add(ct.Name, ct.Image)
	}
	for _, ct := range p.Spec.EphemeralContainers {
		add(ct.Name, ct.Image)
	}
}

func (c *collector) replicaSet(rs *appsv1.ReplicaSet) {
	where := "ReplicaSet " + rs.Namespace + "/" + rs.Name
	if rs.Spec.Replicas != nil && *rs.Spec.Replicas == 0 {
		where += " (rollback)"
	}
	c.podSpec(&rs.Spec.Template.Spec, where)
}

func (c *collector) object(obj any) error {
	switch o := obj.(type) {
	case *corev1.Pod:
		c.pod(o)
	case *appsv1.ReplicaSet:
		c.replicaSet(o)
	case *appsv1.Deployment:
		c.podSpec(&o.Spec.Template.Spec, "Deployment "+o.Namespace+"/"+o.Name)
	case *appsv1.StatefulSet:
		c.podSpec(&o.Spec.Template.Spec, "StatefulSet "+o.Namespace+"/"+o.Name)
	case *appsv1.DaemonSet:
		c.podSpec(&o.Spec.Template.Spec, "DaemonSet "+o.Namespace+"/"+o.Name)
	case *batchv1.Job:
		c.podSpec(&o.Spec.Template.Spec, "Job "+o.Namespace+"/"+o.Name)
	case *batchv1.CronJob:
		c.podSpec(&o.Spec.JobTemplate.Spec.Template.Spec, "CronJob "+o.Namespace+"/"+o.Name)
	default:
		return fmt.Errorf("unexpected object %T", obj)
	}
	return nil
}

// Collect lists, in every namespace of the cluster behind cs, the Pods,
// ReplicaSets, Deployments, StatefulSets, DaemonSets, Jobs and CronJobs,
// and returns the images they name as a snapshot of source "cluster NAME".
func Collect(ctx context.Context, cs kubernetes.Interface, cluster string, now time.Time) (usage.Snapshot, error) {
	c := newCollector(cluster)
	snap := usage.Snapshot{Source: "cluster " + cluster, At: now.UTC()}
	all := metav1.ListOptions{}
	ns := metav1.NamespaceAll
	pods, err := cs.CoreV1().Pods(ns).List(ctx, all)
	if err != nil {
		return snap, fmt.Errorf("listing pods in cluster %s: %w", cluster, err)
	}
	for i := range pods.Items {
		c.pod(&pods.Items[i])
	}
	rss, err := cs.AppsV1().ReplicaSets(ns).List(ctx, all)
	if err != nil {
		return snap, fmt.Errorf("listing replicasets in cluster %s: %w", cluster, err)
	}
	for i := range rss.Items {
		c.replicaSet(&rss.Items[i])
	}
	deps, err := cs.AppsV1().Deployments(ns).List(ctx, all)
	if err != nil {
		return snap, fmt.Errorf("listing deployments in cluster %s: %w", cluster, err)
	}
	for i := range deps.Items {
		_ = c.object(&deps.Items[i])
	}
	sts, err := cs.AppsV1().StatefulSets(ns).List(ctx, all)
	if err != nil {
		return snap, fmt.Errorf("listing statefulsets in cluster %s: %w", cluster, err)
	}
	for i := range sts.Items {
		_ = c.object(&sts.Items[i])
	}
	dss, err := cs.AppsV1().DaemonSets(ns).List(ctx, all)
	if err != nil {
		return snap, fmt.Errorf("listing daemonsets in cluster %s: %w", cluster, err)
	}
	for i := range dss.Items {
		_ = c.object(&dss.Items[i])
	}
	jobs, err := cs.BatchV1().Jobs(ns).List(ctx, all)
	if err != nil {
		return snap, fmt.Errorf("listing jobs in cluster %s: %w", cluster, err)
	}
	for i := range jobs.Items {
		_ = c.object(&jobs.Items[i])
	}
	cjs, err := cs.BatchV1().CronJobs(ns).List(ctx, all)
	if err != nil {
		return snap, fmt.Errorf("listing cronjobs in cluster %s: %w", cluster, err)
	}
	for i := range cjs.Items {
		_ = c.object(&cjs.Items[i])
	}
	snap.Images = c.list()
	return snap, nil
}

// FromFile reads a file for `usage kube --from`: the JSON of `kubectl get
// pods,rs,deploy,sts,ds,jobs,cronjobs -A -o json` (a v1 List; a single
// object is read too), or else a plain list of image references, one a
// line ('#' starts a comment; an optional second field says where, e.g.
// "ecs prod/web"). source names the snapshot (cluster name or file).
func FromFile(data []byte, source string, now time.Time) (usage.Snapshot, error) {
	snap := usage.Snapshot{Source: source, At: now.UTC()}
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) > 0 && trimmed[0] == '{' {
		c := newCollector(source)
		if err := readKubectlJSON(trimmed, c); err != nil {
			return snap, fmt.Errorf("reading kubectl JSON %s: %w", source, err)
		}
		snap.Images = c.list()
		return snap, nil
	}
	c := newCollector("")
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if i := strings.Index(line, "#"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if line == "" {
			continue
		}
		ref, where, _ := strings.Cut(line, " ")
		where = strings.TrimSpace(where)
		if where == "" {
			where = fmt.Sprintf("%s line %d", source, n)
		}
		c.add(ref, "", where)
	}
	if err := sc.Err(); err != nil {
		return snap, fmt.Errorf("reading %s: %w", source, err)
	}
	snap.Images = c.list()
	return snap, nil
}

// typeMeta is the kind of one object of a kubectl List.
type typeMeta struct {
	Kind  string            `json:"kind"`
	Items []json.RawMessage `json:"items"`
}

func readKubectlJSON(data []byte, c *collector) error {
	var top typeMeta
	if err := json.Unmarshal(data, &top); err != nil {
		return err
	}
	items := top.Items
	if !strings.HasSuffix(top.Kind, "List") {
		items = []json.RawMessage{data}
	}
	for i, raw := range items {
		var tm typeMeta
		if err := json.Unmarshal(raw, &tm); err != nil {
			return fmt.Errorf("item %d: %w", i, err)
		}
		var obj any
		switch tm.Kind {
		case "Pod":
			obj = &corev1.Pod{}
		case "ReplicaSet":
			obj = &appsv1.ReplicaSet{}
		case "Deployment":
			obj = &appsv1.Deployment{}
		case "StatefulSet":
			obj = &appsv1.StatefulSet{}
		case "DaemonSet":
			obj = &appsv1.DaemonSet{}
		case "Job":
			obj = &batchv1.Job{}
		case "CronJob":
			obj = &batchv1.CronJob{}
		default:
			continue // Services and the like name no image
		}
		if err := json.Unmarshal(raw, obj); err != nil {
			return fmt.Errorf("item %d (%s): %w", i, tm.Kind, err)
		}
		if err := c.object(obj); err != nil {
			return err
		}
	}
	return nil
}
