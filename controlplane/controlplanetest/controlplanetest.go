// Package controlplanetest starts the embedded control plane for tests and benchmarks of
// other packages.
package controlplanetest

import (
	"context"
	"fmt"
	"os"
	"sync"
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

// shared is the control plane Shared starts once per test binary; Main stops it.
var shared struct {
	once sync.Once
	cp   *controlplane.ControlPlane
	err  error
}

// Shared returns one control plane for every test of the binary that calls it, started by the
// first (a start costs seconds; tests that can share the API server's contents should). Tests
// sharing it must leave no object another could trip over: they delete their pods and
// policies when they end and use namespaces of their own. The package's TestMain must call
// Main, which stops it. Without the binaries it skips the test, and fails it under CI.
func Shared(tb testing.TB) *controlplane.ControlPlane {
	tb.Helper()
	for _, find := range []func() (string, error){controlplane.FindKubeAPIServer, controlplane.FindEtcd} {
		if _, err := find(); err != nil {
			testenv.Missing(tb, err.Error())
		}
	}
	shared.once.Do(func() {
		shared.cp, shared.err = controlplane.Start(context.Background(), controlplane.Options{})
	})
	if shared.err != nil {
		tb.Fatal(shared.err)
	}
	return shared.cp
}

// Main runs the tests and stops the shared control plane, if one was started; use it as
// TestMain's body.
func Main(m *testing.M) {
	code := m.Run()
	if shared.cp != nil {
		if err := shared.cp.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop shared control plane:", err)
			code = max(code, 1)
		}
	}
	os.Exit(code)
}

// AdminClient is a system:masters client that may write quickly (client-go's default of 5
// requests a second would throttle every writer).
func AdminClient(cp *controlplane.ControlPlane) *kubernetes.Clientset {
	cfg := cp.RESTConfig()
	cfg.QPS, cfg.Burst = 5000, 10000
	return kubernetes.NewForConfigOrDie(cfg)
}
