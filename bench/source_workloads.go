package bench

import (
	"encoding/json"
	"fmt"

	"netpolbench/workloads"
)

// WorkloadSource generates each scale from a workloads spec. With a preset, a scale that an
// embedded preset was drawn for (100 small, 1,000 default, 10,000 large, 100,000 huge) uses
// that preset, whose label sets grow slower than pods as in real clusters (Cilium's 50,000
// pods had 250 identities); any other scale, and an inline spec, is the base scaled with
// Spec.WithPods (label sets and policies in proportion to pods).
type WorkloadSource struct {
	Base workloads.Spec
	// NamespacePrefix, when set, replaces the namespaces' name prefix at every scale (a run
	// that writes to a real cluster uses names of its own).
	NamespacePrefix string
	// byPods holds the presets by their pod count (preset sources only).
	byPods map[int]workloads.Spec
	// used records the scales a preset served, for Describe.
	used map[int]string
}

// NewWorkloadSource reads the sweep's workload: its inline spec, else its preset.
func NewWorkloadSource(s Spec) (*WorkloadSource, error) {
	var base workloads.Spec
	var err error
	if len(s.Workload) > 0 {
		base, err = workloads.ParseSpec(s.Workload)
	} else {
		base, err = workloads.Preset(s.Preset)
	}
	if err != nil {
		return nil, fmt.Errorf("sweep workload: %w", err)
	}
	base.Seed = s.Seed
	w := &WorkloadSource{Base: base, used: map[int]string{}}
	if len(s.Workload) == 0 {
		w.byPods = map[int]workloads.Spec{}
		for _, name := range workloads.Presets() {
			p, err := workloads.Preset(name)
			if err != nil {
				return nil, fmt.Errorf("sweep workload: %w", err)
			}
			if _, dup := w.byPods[p.Pods]; !dup {
				p.Seed = s.Seed
				w.byPods[p.Pods] = p
			}
		}
	}
	return w, nil
}

func (w *WorkloadSource) Scale(pods, labelSets int) (*Scenario, error) {
	s, ok := w.byPods[pods]
	if ok && labelSets == 0 {
		w.used[pods] = s.Name
	} else {
		s = w.Base.WithPods(pods)
	}
	if labelSets > 0 {
		s.LabelSets.Count = min(labelSets, pods)
	}
	if w.NamespacePrefix != "" {
		s.Namespaces.Prefix = w.NamespacePrefix
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	g, err := workloads.Generate(s)
	if err != nil {
		return nil, err
	}
	return &Scenario{Pods: pods, LabelSets: s.LabelSets.Count, Cluster: g.Cluster, External: g.External, Generated: g}, nil
}

func (w *WorkloadSource) Describe() json.RawMessage {
	d := struct {
		Base workloads.Spec `json:"base"`
		// Presets are the embedded presets the scales of that pod count used.
		Presets map[int]workloads.Spec `json:"presets,omitempty"`
	}{Base: w.Base, Presets: map[int]workloads.Spec{}}
	for pods := range w.used {
		d.Presets[pods] = w.byPods[pods]
	}
	b, err := json.Marshal(d)
	if err != nil {
		return nil
	}
	return b
}

func (w *WorkloadSource) Fixed() bool { return false }
