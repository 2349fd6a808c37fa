package policy

import (
	"errors"
	"net/netip"
)

// Options configure compilation.
type Options struct {
	// IdentityLabel reports whether a pod label key is identity-relevant. Nil means
	// DefaultIdentityLabel.
	IdentityLabel func(key string) bool
}

// Compiler holds a cluster and its compiled State and keeps both current under churn.
type Compiler struct {
	cluster *Cluster
	state   *State
}

// State is the compiled, backend-neutral enforcement state. It changes only through
// Compiler.Apply; read it through its methods.
type State struct {
	c *Compiler
}

var errUnimplemented = errors.New("compiler: not implemented yet")

// Compile compiles the cluster. The Compiler takes ownership of c: apply churn through
// Compiler.Apply, which keeps the cluster and the State in step.
func Compile(c *Cluster, opts Options) (*Compiler, error) { return nil, errUnimplemented }

// Cluster returns the cluster as of the last applied event.
func (c *Compiler) Cluster() *Cluster { return c.cluster }

// State returns the compiled state (the same object after every Apply).
func (c *Compiler) State() *State { return c.state }

// Apply applies one churn event to the cluster and returns what it changed in the State.
// A rejected event changes nothing.
func (c *Compiler) Apply(ev Event) (*Delta, error) { return nil, errUnimplemented }

// Cluster returns the cluster the state was compiled from.
func (s *State) Cluster() *Cluster { return s.c.cluster }

// Endpoints returns every endpoint, sorted by ID.
func (s *State) Endpoints() []*Endpoint { return nil }

// Endpoint returns the endpoint with the given id.
func (s *State) Endpoint(id uint32) (*Endpoint, bool) { return nil, false }

// EndpointByIP returns the endpoint of the pod with that IP.
func (s *State) EndpointByIP(ip netip.Addr) (*Endpoint, bool) { return nil, false }

// RuleSets returns every rule set, sorted by ID.
func (s *State) RuleSets() []*RuleSet { return nil }

// RuleSet returns a rule set by id. RuleSetAllowAll is not stored.
func (s *State) RuleSet(id RuleSetID) (*RuleSet, bool) { return nil, false }

// Identities returns every allocated identity (pod and CIDR), sorted by ID.
func (s *State) Identities() []*IdentityInfo { return nil }

// Identity returns an identity's description.
func (s *State) Identity(id Identity) (*IdentityInfo, bool) { return nil, false }

// Members returns the pod IPs that hold a pod identity, sorted.
func (s *State) Members(id Identity) []netip.Addr { return nil }

// CIDRs returns the ipBlock prefixes with their identities, sorted by prefix.
func (s *State) CIDRs() []CIDR { return nil }

// CIDRIdentityOf returns the identity of the longest ipBlock prefix holding ip, or
// IdentityWorld when none does. For a pod IP this is the identity the CIDR fall-back uses.
func (s *State) CIDRIdentityOf(ip netip.Addr) Identity { return IdentityWorld }

// PeerIdentities returns the identities an address is known by, in lookup order: for a pod its
// pod identity then CIDRIdentityOf(ip); otherwise CIDRIdentityOf(ip) alone.
func (s *State) PeerIdentities(ip netip.Addr) []Identity { return nil }

// Verdict decides a flow by a plain lookup in the compiled state (the "compiled" backend).
func (s *State) Verdict(f Flow) Verdict { return Deny }
