// Package workloads generates deterministic synthetic Kubernetes clusters and churn streams:
// namespaces, pods with container ports and status.podIP, and NetworkPolicies built from
// templates, as real k8s.io/api objects and as a *policy.Cluster built from them.
//
// Everything is a function of a Spec and a seed: the same seed gives the same cluster, byte for
// byte, and the same churn stream. Each stage (namespaces, label sets, pods, policies) draws
// from its own random stream, so changing the policy templates does not move any pod.
//
// Address plan: pod IPs come from 198.18.0.0/15 (RFC 2544 benchmarking space), skipping the
// network and broadcast addresses of the /15, so at most 131,070 pods are live at once.
// External hosts come from 203.0.113.0/24 (TEST-NET-3).
//
// The embedded presets under specs/ (small, default, large, huge: 100 to 100,000 pods) are
// complete examples of the spec format; `netpolbench gen --preset NAME` writes one
// as Kubernetes YAML. Other packages pin what the presets generate (policy's golden compiled
// sizes, workloads' own golden hashes): change the generator only on purpose, and re-run
// those goldens when you do.
package workloads
