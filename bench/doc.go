// Package bench runs the benchmark sweep behind `make bench`: for every scale of a sweep (pods,
// and distinct label sets at a fixed pod count) and every backend it measures
//
//   - full-sync and churn apply times (pod add, delete, relabel, scale bursts, policy add,
//     update, remove) with the kernel operations each needed, and the convergence from an
//     event to the first probe that sees the new verdict (BPF_PROG_TEST_RUN for eBPF, real
//     packets through the testbed for iptables);
//   - the state each backend holds (map entries, bytes and memlock; rules, chains, restore
//     bytes and ipset members) and the suite's own peak memory;
//   - BPF_PROG_TEST_RUN distributions of the eBPF programs (histograms of batch means) with the
//     empty program as their floor;
//   - in a namespace testbed of the backend's own (package testbed), on the state as compiled
//     and before churn: the per-packet enforcement cost stamped in the kernel by the programs
//     of bench/stamp, per path above that path's floor, in rounds that alternate floor and
//     backend (MeasurePackets; the method's design is bench/stamp's package doc), every
//     backend at the one rate Spec.PacketRate in eight rounds (each figure with its rounds'
//     medians, the floor's drift and a 95% interval of its p50 from resampling rounds), at the
//     sparse rate too at Spec.SparsePods (and for eBPF at a dense one, 50,000 new flows a
//     second), with the eBPF datapath's verdicts and map operations diffed per round, and
//     for eBPF at Spec.CachePods at both rates, with a working set of 65,536 flows and with
//     maps at 8× headroom, one change at a time (variants in four rounds each); then TCP
//     request/response latency and UDP throughput;
//   - after churn, in the same testbed: a steady packet stream between pods that stay allowed
//     while a second event list is applied (loss and latency per interval).
//
// Last comes the end-to-end phase (Spec.APIServer, apiserver.go): at each of its scales a
// generated cluster is written through a Kubernetes API server (an embedded etcd and
// kube-apiserver, or the user's cluster), and for each backend in turn the agent (package
// agent), its backend in force in a testbed of its own, enforces it while churn is written at
// each rate (package driver); every event is timed from its write to the first probe packet
// sent with its new verdict (testbed.SendUntil, on flows a model of the writes picks), with the
// API server's load. The churn is taken back between backends (policy.Cluster.Inverse), so each
// meets the same events on the same cluster; an agent that falls behind a rate is not run at the
// higher ones.
//
// # Phases and the frozen state
//
// A run is a sequence of phases, per scale the workload, then per backend its syncs and size,
// test runs, real packets, round trips, churn and churn under load (Runner); then, per scale of
// the end-to-end phase, the cluster written and one phase per backend (a resumed run writes
// the cluster again into a fresh control plane). Every figure before
// churn is measured on the scale's frozen state, the cluster as compiled, with the scale's
// frozen flow list: every latency entry carries both digests (policy.State.Digest,
// stamp.FlowList.Digest), equal across backends. Churn replays one event list per scale,
// generated once, on every backend (its digest is on every churn update); a backend that does
// not apply the whole list is capped in the churn phase and measures nothing after it. Per-IP
// backends are capped before they open by what their own plan says a sync would write
// (catalogue.Backend.Plan).
//
// # Written as measured
//
// After every phase the run directory holds results.json (complete: false until the end, with
// the phases so far), bench.txt and the .hgrm files, each replaced atomically. A run whose
// context ends drops the phase under way, records where it stopped and returns ErrInterrupted;
// Runner.Resume continues it with the same binary, sweep and source.
//
// From the sweep it fits growth exponents (log cost against log pods or identities) and checks
// the seed claims. Everything is written through package results: results.json, .hgrm files
// and Go benchmark format for benchstat. A backend or phase that cannot run here (no root, a
// budget exceeded) is recorded as a cap with its reason; the run fails only when a stamped
// packet's fate disagrees with the reference.
package bench
