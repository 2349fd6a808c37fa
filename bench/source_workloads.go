package bench

import (
	"encoding/json"
	"fmt"

	"netpolbench/workloads"
)

// WorkloadSource generates each scale from a workloads spec (a preset or an inline spec),
// scaled with Spec.WithPods so every scale keeps the preset's shape: label sets and policies
// grow in proportion to pods.
type WorkloadSource struct {
	Base workloads.Spec
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
	return &WorkloadSource{Base: base}, nil
}

func (w *WorkloadSource) Scale(pods, labelSets int) (*Scenario, error) {
	s := w.Base.WithPods(pods)
	if labelSets > 0 {
		s.LabelSets.Count = min(labelSets, pods)
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	g, err := workloads.Generate(s)
	if err != nil {
		return nil, err
	}
	return &Scenario{Pods: pods, LabelSets: s.LabelSets.Count, Cluster: g.Cluster, External: g.External}, nil
}

func (w *WorkloadSource) Describe() json.RawMessage {
	b, err := json.Marshal(w.Base)
	if err != nil {
		return nil
	}
	return b
}

func (w *WorkloadSource) Fixed() bool { return false }
