// Package metrics writes Prometheus text-format files for node_exporter's
// textfile collector: gauges a command sets, written atomically (a
// temporary file renamed into place), with the last success time carried
// over from the previous file when a run fails.
package metrics

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Set is the metrics of one command run, all gauges named
// regkeeper_<command>_<name>.
type Set struct {
	command string
	reg     *prometheus.Registry
	vecs    map[string]*prometheus.GaugeVec
	labels  map[string][]string
}

// New returns an empty set for command ("gc", "backup", "audit", "cycle").
func New(command string) *Set {
	return &Set{command: command, reg: prometheus.NewRegistry(), vecs: map[string]*prometheus.GaugeVec{}, labels: map[string][]string{}}
}

// Gauge sets regkeeper_<command>_<name>{labels} to v. Label names are fixed
// by the first call for a name; labels are given as name, value pairs.
func (s *Set) Gauge(name, help string, v float64, labels ...string) {
	var keys, values []string
	for i := 0; i+1 < len(labels); i += 2 {
		keys, values = append(keys, labels[i]), append(values, labels[i+1])
	}
	full := "regkeeper_" + s.command + "_" + name
	vec := s.vecs[full]
	if vec == nil {
		vec = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: full, Help: help}, keys)
		s.reg.MustRegister(vec)
		s.vecs[full] = vec
	}
	vec.WithLabelValues(values...).Set(v)
}

// Write writes the set to path. success records whether the run succeeded:
// regkeeper_<command>_success is 1 or 0, and
// regkeeper_<command>_last_success_timestamp_seconds is now on success, or
// the previous file's value on failure (absent if there was none).
func (s *Set) Write(path string, success bool, now time.Time) error {
	last := float64(now.Unix())
	if !success {
		last = previous(path, "regkeeper_"+s.command+"_last_success_timestamp_seconds")
	}
	ok := 0.0
	if success {
		ok = 1
	}
	s.Gauge("success", "1 if the last run succeeded, else 0.", ok)
	if last > 0 {
		s.Gauge("last_success_timestamp_seconds", "Unix time of the last successful run.", last)
	}
	if err := prometheus.WriteToTextfile(path, s.reg); err != nil {
		return fmt.Errorf("writing metrics to %s: %w", path, err)
	}
	return nil
}

// previous reads one gauge from an earlier metrics file; 0 when absent.
func previous(path, name string) float64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(f)
	if err != nil {
		return 0
	}
	if fam := fams[name]; fam != nil && len(fam.Metric) > 0 && fam.GetType() == dto.MetricType_GAUGE {
		return fam.Metric[0].GetGauge().GetValue()
	}
	return 0
}

// Names lists the metric names of a file, for tests and diagnostics.
func Names(path string) ([]string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(raw)))
	if err != nil {
		return nil, err
	}
	var out []string
	for n := range fams {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}
