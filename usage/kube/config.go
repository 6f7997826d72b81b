package kube

import (
	"fmt"
	"sort"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Cluster is a cluster to read: its name (the kubeconfig context, or
// "in-cluster") and a client.
type Cluster struct {
	Name   string
	Client kubernetes.Interface
}

// Clusters returns clients for the named contexts of the kubeconfig (the
// usual loading rules: kubeconfig if given, else $KUBECONFIG, else
// ~/.kube/config), or for every context when none is named; with
// inCluster, the one cluster regkeeper runs in (its service account).
func Clusters(kubeconfig string, contexts []string, inCluster bool) ([]Cluster, error) {
	if inCluster {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster config: %w", err)
		}
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return nil, fmt.Errorf("in-cluster client: %w", err)
		}
		return []Cluster{{Name: "in-cluster", Client: cs}}, nil
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if kubeconfig != "" {
		rules.ExplicitPath = kubeconfig
	}
	raw, err := rules.Load()
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig: %w", err)
	}
	if len(contexts) == 0 {
		for name := range raw.Contexts {
			contexts = append(contexts, name)
		}
		sort.Strings(contexts)
	}
	if len(contexts) == 0 {
		return nil, fmt.Errorf("the kubeconfig has no contexts")
	}
	var out []Cluster
	for _, name := range contexts {
		if _, ok := raw.Contexts[name]; !ok {
			return nil, fmt.Errorf("no context %q in the kubeconfig", name)
		}
		cfg, err := clientcmd.NewNonInteractiveClientConfig(*raw, name, &clientcmd.ConfigOverrides{}, rules).ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("kubeconfig context %s: %w", name, err)
		}
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig context %s: %w", name, err)
		}
		out = append(out, Cluster{Name: name, Client: cs})
	}
	return out, nil
}
