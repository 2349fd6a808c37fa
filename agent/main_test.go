package agent_test

import (
	"testing"

	"netpolbench/controlplane/controlplanetest"
)

// The integration tests share one control plane (controlplanetest.Shared).
func TestMain(m *testing.M) { controlplanetest.Main(m) }
