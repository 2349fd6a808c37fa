// Package policy is the pure core of netpolbench: it reads Kubernetes Namespace, Pod and
// networking.k8s.io/v1 NetworkPolicy objects, allocates Cilium-style security identities,
// evaluates flows with a reference evaluator that is the suite's source of truth, and compiles
// policies into a backend-neutral State that every enforcement backend translates.
//
// Readings where the NetworkPolicy spec leaves room (every backend follows them):
//   - ipBlock also matches pod IPs (the upstream e2e reading; Cilium differs, cilium#9209).
//   - A named port whose protocol differs from the rule's protocol matches nothing.
//   - A named port never matches a destination outside the cluster.
//   - Ingress rules of a policy whose policyTypes omit Ingress are ignored; likewise egress.
//   - A pod reaching its own IP is always allowed.
//   - A rule without ports matches every protocol, ICMP included; a port entry without a
//     port number matches every port of its protocol.
package policy
