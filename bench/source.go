package bench

import (
	"encoding/json"
	"fmt"
	"net/netip"

	"netpolbench/policy"
	"netpolbench/workloads"
)

// Scenario is one scale of a sweep: a fresh cluster the runner may hand to policy.Compile.
type Scenario struct {
	// Pods is the pod count the scale was asked for; LabelSets the distinct label sets (0:
	// the source's choice).
	Pods, LabelSets int
	Cluster         *policy.Cluster
	// External are hosts outside the cluster (203.0.113.0/24) for flows to and from the world.
	External []netip.Addr
	// Generated is the cluster's generated objects, of which Cluster is the model (nil for a
	// cluster file): what the end-to-end phase writes through an API server, and the churn
	// streams it draws from them.
	Generated *workloads.Generated
}

// Source builds the cluster of each scale.
type Source interface {
	// Scale returns a fresh cluster of about pods pods and labelSets distinct label sets
	// (labelSets 0: the source's own proportion). Each call returns a new cluster.
	Scale(pods, labelSets int) (*Scenario, error)
	// Describe is the workload spec for results.json (raw JSON).
	Describe() json.RawMessage
	// Fixed reports whether the source has one scale only (a user's cluster dump).
	Fixed() bool
}

// ClusterFileSource benchmarks a user's cluster dump (`kubectl get ns,pods,netpol -A -o
// yaml`): one scale, the dump's own.
type ClusterFileSource struct {
	Path string
	// Warnings are what policy.Load skipped (pods without IPs, ...).
	Warnings []string
	pods     int
}

// NewClusterFileSource loads the dump once to check it and count its pods.
func NewClusterFileSource(path string) (*ClusterFileSource, error) {
	cl, warn, err := policy.Load(path)
	if err != nil {
		return nil, fmt.Errorf("load cluster %s: %w", path, err)
	}
	if len(cl.Pods) == 0 {
		return nil, fmt.Errorf("load cluster %s: no pods with an IPv4 status.podIP", path)
	}
	return &ClusterFileSource{Path: path, Warnings: warn, pods: len(cl.Pods)}, nil
}

func (s *ClusterFileSource) Scale(int, int) (*Scenario, error) {
	cl, _, err := policy.Load(s.Path)
	if err != nil {
		return nil, fmt.Errorf("load cluster %s: %w", s.Path, err)
	}
	return &Scenario{Pods: len(cl.Pods), Cluster: cl, External: []netip.Addr{netip.MustParseAddr("203.0.113.10"), netip.MustParseAddr("203.0.113.20")}}, nil
}

// Pods is the dump's pod count.
func (s *ClusterFileSource) Pods() int { return s.pods }

func (s *ClusterFileSource) Describe() json.RawMessage {
	b, _ := json.Marshal(map[string]any{"cluster": s.Path, "pods": s.pods})
	return b
}

func (s *ClusterFileSource) Fixed() bool { return true }
