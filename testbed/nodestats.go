package testbed

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
)

// NodeConntrackEntries returns how many entries the node namespace's conntrack table holds
// (the "entries" column of /proc/net/stat/nf_conntrack; 6.x kernels leave most other columns
// at zero). Entries are created only while something in the namespace holds conntrack's hooks,
// so a count that does not grow over a stretch of new flows shows that nothing did. Fails
// when nf_conntrack is not loaded.
func (tb *Testbed) NodeConntrackEntries() (int64, error) {
	var entries int64
	err := tb.InNode(func() error {
		// /proc/thread-self/net is the namespace of the calling thread, the node's here.
		f, err := os.Open("/proc/thread-self/net/stat/nf_conntrack")
		if err != nil {
			return fmt.Errorf("read node conntrack statistics: %w (is nf_conntrack loaded?)", err)
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		col := -1
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if col < 0 {
				for i, name := range fields {
					if name == "entries" {
						col = i
					}
				}
				if col < 0 {
					return fmt.Errorf("read node conntrack statistics: no entries column in %q", sc.Text())
				}
				continue
			}
			if col >= len(fields) {
				return fmt.Errorf("read node conntrack statistics: short line %q", sc.Text())
			}
			v, err := strconv.ParseInt(fields[col], 16, 64)
			if err != nil {
				return fmt.Errorf("read node conntrack statistics: %w", err)
			}
			// Every CPU's line repeats the namespace's count.
			entries = v
		}
		return sc.Err()
	})
	return entries, err
}

// NodeRxPackets returns how many packets the node has received on all its veths (pod and
// outside) so far: every packet the node forwards, whatever its fate there. A packet the
// sending namespace dropped before the node (a full backlog on a loaded machine) is not
// among them.
func (tb *Testbed) NodeRxPackets() (uint64, error) {
	var n uint64
	for _, v := range append(tb.PodVeths(), tb.OutsideVeth()) {
		l, err := tb.node.h.LinkByIndex(v.Index)
		if err != nil {
			return 0, fmt.Errorf("read %s statistics: %w", v.Name, err)
		}
		if st := l.Attrs().Statistics; st != nil {
			n += st.RxPackets
		}
	}
	return n, nil
}

// WaitLinksUp waits until both ends of every veth are operationally up. A new veth's carrier
// comes up at once, but the kernel's link watcher puts its queueing discipline in place later
// (up to a second under load), and until then everything sent through the device is dropped.
func (tb *Testbed) WaitLinksUp(timeout time.Duration) error {
	type end struct {
		h    *netlink.Handle
		name string
	}
	var ends []end
	for _, p := range append(append([]nsInfo(nil), tb.pods...), tb.out) {
		ends = append(ends, end{tb.node.h, p.veth.Name}, end{p.h, "eth0"})
	}
	deadline := time.Now().Add(timeout)
	for _, e := range ends {
		for {
			l, err := e.h.LinkByName(e.name)
			if err != nil {
				return fmt.Errorf("wait for %s: %w", e.name, err)
			}
			if l.Attrs().OperState == netlink.OperUp {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("wait for %s: still %s after %s", e.name, l.Attrs().OperState, timeout)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return nil
}
