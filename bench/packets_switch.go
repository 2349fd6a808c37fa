package bench

import (
	"errors"
	"fmt"
	"io"

	"github.com/cilium/ebpf/link"

	"netpolbench/datapath"
	"netpolbench/iptables"
	"netpolbench/policy"
	"netpolbench/testbed"
)

// packetCTEntries sizes the enforcing datapath's conntrack for per-packet measurements at
// Cilium's default (512k TCP entries) at every scale: a measurement opens tens of thousands
// of flows, and a table sized by pod count would evict at small scales and not at large ones,
// which would be measured as a cost of scale.
const packetCTEntries = 512 * 1024

// ebpfSwitch is the eBPF datapath, synced to one state, on or off the TCX hooks of every pod
// veth: to_container and from_container return TCX_NEXT on allow, so the stamps behind them
// run.
type ebpfSwitch struct {
	bed   *testbed.Testbed
	dp    *datapath.Datapath
	links linkClosers
}

type linkClosers []io.Closer

// Close closes in reverse order.
func (c linkClosers) Close() error {
	var errs []error
	for i := len(c) - 1; i >= 0; i-- {
		errs = append(errs, c[i].Close())
	}
	return errors.Join(errs...)
}

// openEBPFSwitch loads and syncs the datapath for s; nothing is attached until In.
func openEBPFSwitch(bed *testbed.Testbed, s *policy.State, layout datapath.Layout) (*ebpfSwitch, error) {
	sizes := datapath.SizesFor(s, layout)
	sizes.CT = max(sizes.CT, packetCTEntries)
	dp, err := datapath.Open(datapath.Options{Layout: layout, CT: datapath.CTFull, TCXNext: true, NoDropEvents: true, Sizes: sizes})
	if err != nil {
		return nil, err
	}
	if _, err := dp.Sync(s); err != nil {
		dp.Close()
		return nil, fmt.Errorf("sync enforcing datapath: %w", err)
	}
	return &ebpfSwitch{bed: bed, dp: dp}, nil
}

func (e *ebpfSwitch) Attach() string { return attachTCX }

func (e *ebpfSwitch) In(ingress, egress link.Anchor) error {
	if len(e.links) > 0 {
		return nil
	}
	return e.bed.InNode(func() error {
		for _, v := range e.bed.PodVeths() {
			l, err := e.dp.AttachTCXAt(v.Index, ingress, egress)
			if err != nil {
				return errors.Join(err, e.links.Close())
			}
			e.links = append(e.links, l)
		}
		return nil
	})
}

func (e *ebpfSwitch) Out() error {
	err := e.links.Close()
	e.links = nil
	return err
}

func (e *ebpfSwitch) Close() error { return errors.Join(e.Out(), e.dp.Close()) }

// Datapath is the enforcing datapath.
func (e *ebpfSwitch) Datapath() *datapath.Datapath { return e.dp }

// Lookups are the datapath's map operations per verdict path.
func (e *ebpfSwitch) Lookups() (map[datapath.MetricKey]datapath.Lookups, error) {
	return e.dp.Lookups()
}

// iptablesSwitch is an iptables-family backend synced in the testbed's node namespace; Out
// unhooks its rules (the jump from FORWARD and the conntrack rule), In hooks them again.
type iptablesSwitch struct {
	b      *iptables.Backend
	runner io.Closer
	out    bool
}

// openIptablesSwitch syncs s into bed's node namespace with cfg (its Runner is set here).
func openIptablesSwitch(bed *testbed.Testbed, s *policy.State, cfg iptables.Config) (*iptablesSwitch, error) {
	r, err := iptables.NewNetnsRunner(bed.NodeNamespace())
	if err != nil {
		return nil, err
	}
	cfg.Runner = r
	b, err := iptables.New(cfg)
	if err != nil {
		r.Close()
		return nil, err
	}
	sw := &iptablesSwitch{b: b, runner: r}
	if _, err := b.Sync(s); err != nil {
		return nil, errors.Join(fmt.Errorf("sync %s: %w", cfg.Variant, err), sw.Close())
	}
	return sw, nil
}

func (i *iptablesSwitch) Attach() string { return attachNetfilter }

func (i *iptablesSwitch) In(link.Anchor, link.Anchor) error {
	if !i.out {
		return nil
	}
	if err := i.b.Hook(); err != nil {
		return err
	}
	i.out = false
	return nil
}

func (i *iptablesSwitch) Out() error {
	if i.out {
		return nil
	}
	if err := i.b.Unhook(); err != nil {
		return err
	}
	i.out = true
	return nil
}

func (i *iptablesSwitch) Close() error { return errors.Join(i.b.Close(), i.runner.Close()) }
