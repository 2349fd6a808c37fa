package nftables

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"sigs.k8s.io/knftables"

	"netpolbench/internal/needs"
)

// Namespace runs a function on an OS thread inside a network namespace the caller owns (a
// child process it starts inherits the namespace): an internal/netns handle or pinned thread,
// or an iptables.NetnsRunner, which refuses the process's own namespace.
type Namespace interface {
	Do(fn func() error) error
}

// KernelOptions configure NewKernel.
type KernelOptions struct {
	// ExecList lists chains, sets and maps (what the first sync reads of a table a previous
	// run left) by running `nft -j list` instead of over netlink (knftables' UseNetlink, the
	// default: at 10,000 pods the three lists take 2.7 ms over netlink and 2.7 s through
	// nft, which lists every element too). Transactions always go through `nft -f -`:
	// knftables has no netlink path for them.
	ExecList bool
}

// Needs is what a Backend on the kernel needs from the machine: root (network namespaces and
// netfilter) and nft ≥ 1.0.1.
var Needs = []needs.Need{needs.Root, needs.Tool("nft", "nftables")}

// ErrNoNamespace is returned by NewKernel without a namespace.
var ErrNoNamespace = errors.New("open nftables: no network namespace (the backend never touches the caller's own)")

// NewKernel opens the backend's table in the network namespace ns through knftables and the
// nft binary (nftables ≥ 1.0.1, kernel ≥ 5.6 for concatenated interval sets). Every call of
// the returned interface runs inside ns.
func NewKernel(ns Namespace, opts KernelOptions) (knftables.Interface, error) {
	if ns == nil {
		return nil, ErrNoNamespace
	}
	var o []knftables.Option
	if !opts.ExecList {
		o = append(o, knftables.UseNetlink)
	}
	path, err := exec.LookPath("nft")
	if err != nil {
		return nil, fmt.Errorf("open nftables: %w (install nftables ≥ 1.0.1)", err)
	}
	var nft knftables.Interface
	err = ns.Do(func() error {
		var err error
		nft, err = knftables.New(Family, TableName, o...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("open nftables: %w (is nft ≥ 1.0.1 installed?)", err)
	}
	return &nsInterface{ns: ns, nft: nft, path: path}, nil
}

// nsInterface runs every knftables call inside a network namespace: nft inherits the
// namespace of the thread that starts it, and netlink sockets that of the thread that opens
// them.
type nsInterface struct {
	ns   Namespace
	nft  knftables.Interface
	path string
}

// runText applies nft input as one transaction, as knftables' Run does with the text it
// writes: the backend sends its transactions with element commands batched.
func (n *nsInterface) runText(ctx context.Context, payload string) error {
	var stderr bytes.Buffer
	err := n.ns.Do(func() error {
		cmd := exec.CommandContext(ctx, n.path, "-f", "-")
		cmd.Stdin = strings.NewReader(payload)
		cmd.Stderr = &stderr
		return cmd.Run()
	})
	if err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return fmt.Errorf("%s: %w", msg, err)
		}
		return err
	}
	return nil
}

func (n *nsInterface) NewTransaction() *knftables.Transaction { return n.nft.NewTransaction() }

func (n *nsInterface) Run(ctx context.Context, tx *knftables.Transaction) error {
	return n.ns.Do(func() error { return n.nft.Run(ctx, tx) })
}

func (n *nsInterface) Check(ctx context.Context, tx *knftables.Transaction) error {
	return n.ns.Do(func() error { return n.nft.Check(ctx, tx) })
}

func (n *nsInterface) ListAll(ctx context.Context) (out map[string][]string, err error) {
	err = n.ns.Do(func() error { out, err = n.nft.ListAll(ctx); return err })
	return out, err
}

func (n *nsInterface) List(ctx context.Context, objectType string) (out []string, err error) {
	err = n.ns.Do(func() error { out, err = n.nft.List(ctx, objectType); return err })
	return out, err
}

func (n *nsInterface) ListRules(ctx context.Context, chain string) (out []*knftables.Rule, err error) {
	err = n.ns.Do(func() error { out, err = n.nft.ListRules(ctx, chain); return err })
	return out, err
}

func (n *nsInterface) ListElements(ctx context.Context, objectType, name string) (out []*knftables.Element, err error) {
	err = n.ns.Do(func() error { out, err = n.nft.ListElements(ctx, objectType, name); return err })
	return out, err
}

func (n *nsInterface) ListCounters(ctx context.Context) (out []*knftables.Counter, err error) {
	err = n.ns.Do(func() error { out, err = n.nft.ListCounters(ctx); return err })
	return out, err
}

// ListTable runs `nft [args] list table inet netpolbench` in ns and returns its output (args:
// -j for JSON, -a for handles). A missing table is an error.
func ListTable(ns Namespace, args ...string) ([]byte, error) {
	if ns == nil {
		return nil, ErrNoNamespace
	}
	var stdout, stderr bytes.Buffer
	err := ns.Do(func() error {
		cmd := exec.Command("nft", append(args, "list", "table", string(Family), TableName)...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		return cmd.Run()
	})
	if err != nil {
		return nil, fmt.Errorf("nft list table %s %s: %w: %s", Family, TableName, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.Bytes(), nil
}

// kernelRuleset reads the table the kernel holds in ns.
func kernelRuleset(ns Namespace) (*ruleset, error) {
	out, err := ListTable(ns, "-j")
	if err != nil {
		return nil, err
	}
	return fromJSON(out)
}
