// Package catalogue declares every enforcement backend once: its name and help, its family,
// the apply path its updates take, what it needs from the machine, and the ways in that it
// has. The command line (verdict, bench and their help), the benchmark and the real-packet
// verdicts all read it; none of them knows a backend by name.
//
// # The ways in
//
// A Backend has up to three, each nil where the backend has none:
//
//   - New opens it for the benchmark's sync and churn phases, not yet synced (the runner times
//     the first Sync). Backends of a family whose state lives in the testbed's node namespace
//     (Family.InNode: iptables, ipset) are opened there with OpenInNode.
//   - Decide opens it synced, as a flow decider that sends no packet (`netpolbench verdict`):
//     the reference evaluator, a lookup in the compiled state, BPF_PROG_TEST_RUN of the real
//     programs, or a trace through the rules an iptables backend would restore into its Fake.
//     Every decider but the reference's is a policy.Backend too, so updates keep it current:
//     the agent's conformance test drives each one from an API server that way.
//   - Install puts it in force in a testbed, synced, for real packets. A family InNode needs
//     none: its backend is in force as soon as it is synced in the node namespace.
//
// Callers go through the methods (Open, Decider, Enforce, OpenInNode), which check Needs
// first and return an error wrapping ErrUnavailable that names what is missing. Enforce and
// OpenInNode go through testbed.Enforce, so every enforcement, the benchmark's included, is
// checked for leftovers when it is taken out.
//
// # Dependencies
//
// catalogue imports the backends (datapath, iptables), policy, results and testbed; bench and
// cmd/netpolbench import catalogue. testbed never imports catalogue, nor any backend: it offers
// the namespaces, the packets and the enforcement lifecycle (Testbed.Enforce with a function
// that installs, checks for leftovers around it), and the catalogue supplies the backends.
//
// # Adding a backend
//
// Write its package (a policy.Backend; a Fake where it can have one), then add one entry to
// the list in catalogue.go, with its glue (the functions its entry names) in a file of this
// package named after the family. A new family (nftables) also declares one Family value: the
// unit its operations are counted in, where the benchmark's stamps bracket it, whether its
// state lives in the node namespace and grows per pod IP, whether the benchmark caps it on its
// plan, and how to size it from its sync counts. Its package's kernel tests declare their
// needs with the same list as its entry (testenv.NeedKernel(t, pkg.Needs...)); tests of code
// that reads the catalogue use testenv.NeedKernel(t, catalogue.MustGet(name).Needs...).
//
// # Kernel memory
//
// A backend that keeps state in a kernel runs the work that creates it (the nft,
// iptables-restore and ipset processes, or the thread that creates BPF maps) on a thread of
// its own that has joined a memory cgroup made for the backend (kernelmem.go, package
// internal/memcg), so its Size reports the kernel memory its state takes as kernel_bytes, with
// a note on what the kernel charges and what it does not; closing the backend removes the
// cgroup.
package catalogue
