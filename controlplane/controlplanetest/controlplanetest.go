// Package controlplanetest starts the embedded control plane for tests and benchmarks of
// other packages.
package controlplanetest

import (
	"context"
	"testing"

	"k8s.io/client-go/kubernetes"

	"netpolbench/controlplane"
	"netpolbench/internal/testenv"
)

// Start starts etcd and kube-apiserver for the test and stops them when it ends. Without
// the binaries (make controlplane) it skips the test, and fails it under CI.
func Start(tb testing.TB) *controlplane.ControlPlane {
	tb.Helper()
	for _, find := range []func() (string, error){controlplane.FindKubeAPIServer, controlplane.FindEtcd} {
		if _, err := find(); err != nil {
			testenv.Missing(tb, err.Error())
		}
	}
	cp, err := controlplane.Start(context.Background(), controlplane.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := cp.Stop(); err != nil {
			tb.Error(err)
		}
	})
	return cp
}

// AdminClient is a system:masters client that may write quickly (client-go's default of 5
// requests a second would throttle every writer).
func AdminClient(cp *controlplane.ControlPlane) *kubernetes.Clientset {
	cfg := cp.RESTConfig()
	cfg.QPS, cfg.Burst = 5000, 10000
	return kubernetes.NewForConfigOrDie(cfg)
}
