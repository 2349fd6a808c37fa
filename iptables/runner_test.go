package iptables

import (
	"errors"
	"testing"
)

// TestNetnsRunnerRefusesTheRootNamespace checks the guard: the namespace the process runs in
// (and PID 1's) is never a target.
func TestNetnsRunnerRefusesTheRootNamespace(t *testing.T) {
	for _, path := range []string{"/proc/self/ns/net", "/proc/thread-self/ns/net"} {
		t.Run(path, func(t *testing.T) {
			r, err := NewNetnsRunner(path)
			if err == nil {
				r.Close()
				t.Fatal("runner opened the process's own namespace")
			}
			if !errors.Is(err, ErrRootNamespace) {
				t.Fatalf("error %v, want ErrRootNamespace", err)
			}
		})
	}
}
