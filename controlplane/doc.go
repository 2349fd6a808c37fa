// Package controlplane runs a throwaway Kubernetes control plane on this machine: one etcd and
// one kube-apiserver, on 127.0.0.1 only, serving Namespaces, Pods and NetworkPolicies to the
// agent and the driver exactly as a real cluster's API server would (watches, resource
// versions, the status subresource, RBAC, /metrics).
//
// Start makes a run directory, os.TempDir()/npb-cp-<pid>-<hex>, holding everything of the run:
// etcd's data, a certificate authority, the API server's serving certificate, an admin client
// certificate (group system:masters), the service-account signing key, a kubeconfig and the
// two processes' logs. Every port is a free loopback port picked at start; nothing binds any
// other address. The API server runs without the controllers of a cluster (no
// kube-controller-manager, no scheduler, no kubelet): objects stay as written, so a pod gets its
// address only when someone writes status.podIP through the status subresource, as a kubelet
// would. The ServiceAccount admission plugin is off (no controller makes the default service
// account a pod would need) and so is the endpoint reconciler (the loopback address the API
// server advertises is not a valid endpoint).
//
// The binaries: kube-apiserver is built from the k8s.io/kubernetes module at KubeVersion
// (tools/kube-apiserver, `make controlplane`) into the user's cache directory; etcd comes from
// Debian's etcd-server package (3.4). FindKubeAPIServer and FindEtcd say where they are.
//
// Stop stops both processes (SIGTERM, then SIGKILL after a grace period) and removes the run
// directory. The processes are started with a parent-death signal, so a killed run takes its
// processes with it; what it leaves (the run directory, and any process that survived)
// Cleanup removes once the run's pid is gone: `netpolbench cleanup` calls it.
package controlplane
