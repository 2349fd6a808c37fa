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
//     backend (MeasurePackets; the method's design is bench/stamp's package doc), at the
//     sparse rate too at Spec.SparsePods, with the eBPF datapath's map operations per verdict
//     path;
//   - after churn, in the same testbed: TCP request/response latency, UDP throughput, and a
//     steady packet stream between pods that stay allowed while churn runs (loss and latency
//     per interval).
//
// From the sweep it fits growth exponents (log cost against log pods or identities) and checks
// the seed claims. Everything is written through package results: results.json, .hgrm files
// and Go benchmark format for benchstat. A backend or phase that cannot run here (no root, a
// budget exceeded) is recorded as a cap with its reason; the run fails only when a stamped
// packet's fate disagrees with the reference.
package bench
