// Package agent keeps a backend enforcing what a Kubernetes API server holds, as a CNI's agent
// does, and never writes to the API server.
//
// Shared informers (client-go) watch Namespaces, Pods and NetworkPolicies and queue the key of
// every object that changed; the work queue folds repeated changes of one object into one item.
// A single worker takes an item and reconciles: the informer's cache is the truth, the
// compiler's cluster is what is enforced, and only their difference becomes compiler events
// (policy.Event), whose deltas the backend applies (policy.Backend.Update). Because the worker
// compares states instead of replaying watch events, a change seen twice, a periodic resync or
// a relist after a broken watch applies nothing twice, and a deletion missed while disconnected
// comes back from the relist as a tombstone and is applied. After every item the compiled state
// equals a fresh compile of the cache (Snapshot builds one).
//
// What is enforced of an object: a pod while it is a policy endpoint (policy.PodFromK8s: once
// it has an IPv4 address, until it is deleted or finishes, unless it runs on the host's network);
// a policy the compiler accepts (policy.CheckPolicy); a namespace's labels, which are part of
// its pods' identities (policy.NamespaceRelabel moves them incrementally). A pod whose address
// another pod still holds waits for that pod's deletion, which is queued first.
//
// Observations (Options.Observe) time each item: the watch event, the dequeue, the delta
// computed, the backend applied. The driver package pairs them with the API writes that
// caused them.
package agent
