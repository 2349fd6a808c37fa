package policy

// For the tests of package policy_test, which may use what imports this package (workloads).
var (
	CheckCluster = checkCluster
	PodToK8s     = podToK8s
)
