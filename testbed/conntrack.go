package testbed

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
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
