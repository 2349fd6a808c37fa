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
//   - in a namespace testbed (package testbed): the per-packet enforcement cost stamped in the
//     kernel by the programs of bench/stamp around the enforcement point, by verdict and flow
//     state, above a floor measured with an empty step in the same run; TCP request/response
//     latency; UDP throughput; and a steady packet stream between pods that stay allowed while
//     churn runs (loss and latency per interval).
//
// From the sweep it fits growth exponents (log cost against log pods or identities) and checks
// the seed claims. Everything is written through package results: results.json, .hgrm files
// and Go benchmark format for benchstat. A backend or phase that cannot run here (no root, a
// budget exceeded) is recorded as a cap with its reason; it never fails the run.
package bench
