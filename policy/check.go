package policy

import networkingv1 "k8s.io/api/networking/v1"

// CheckPolicy reports whether a policy compiles under opts: it is valid, and its pod selectors
// use only identity-relevant labels. Compile fails on, and Apply rejects, a policy it refuses,
// so a caller that builds a cluster from untrusted objects leaves such policies out first.
func CheckPolicy(np *networkingv1.NetworkPolicy, opts Options) error {
	cp, err := compilePolicy(DefaultPolicy(np))
	if err != nil {
		return err
	}
	if opts.IdentityLabel == nil {
		opts.IdentityLabel = DefaultIdentityLabel
	}
	return (&Compiler{opts: opts}).checkKeys(cp)
}
