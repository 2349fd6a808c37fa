package driver

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"k8s.io/client-go/kubernetes"
)

// Load is what an API server counted, from its /metrics: requests by verb and resource
// (apiserver_request_total) and watch events sent by resource (apiserver_watch_events_total).
// Reading /metrics needs get on the non-resource URL /metrics (system:masters has it).
type Load struct {
	// Requests maps "VERB resource[/subresource]" (e.g. "POST pods", "PUT pods/status",
	// "WATCH networkpolicies") to a count.
	Requests map[string]int64
	// WatchEvents maps a resource ("pods", "networkpolicies", ...) to the events sent to
	// watchers.
	WatchEvents map[string]int64
}

// ReadLoad reads the API server's counters now.
func ReadLoad(ctx context.Context, c kubernetes.Interface) (Load, error) {
	b, err := c.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return Load{}, fmt.Errorf("read apiserver metrics: %w (the client needs get on /metrics)", err)
	}
	return parseLoad(b), nil
}

// parseLoad sums the counters of Prometheus text exposition over the labels Load ignores.
func parseLoad(text []byte) Load {
	l := Load{Requests: map[string]int64{}, WatchEvents: map[string]int64{}}
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		name, rest, ok := strings.Cut(line, "{")
		if !ok || (name != "apiserver_request_total" && name != "apiserver_watch_events_total") {
			continue
		}
		lbls, value, ok := strings.Cut(rest, "} ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.Fields(value)[0], 64)
		if err != nil {
			continue
		}
		get := labelsOf(lbls)
		if name == "apiserver_request_total" {
			k := get["verb"] + " " + get["resource"]
			if sub := get["subresource"]; sub != "" {
				k += "/" + sub
			}
			l.Requests[k] += int64(v)
		} else {
			l.WatchEvents[get["resource"]] += int64(v)
		}
	}
	return l
}

// labelsOf parses `k1="v1",k2="v2"` (backslash escapes in values).
func labelsOf(s string) map[string]string {
	out := map[string]string{}
	for s != "" {
		k, rest, ok := strings.Cut(s, `="`)
		if !ok {
			break
		}
		var v strings.Builder
		i := 0
		for ; i < len(rest) && rest[i] != '"'; i++ {
			if rest[i] == '\\' && i+1 < len(rest) {
				i++
			}
			v.WriteByte(rest[i])
		}
		out[strings.TrimPrefix(k, ",")] = v.String()
		if i >= len(rest) {
			break
		}
		s = rest[i+1:]
	}
	return out
}

// Sub returns the counts of l less those of before.
func (l Load) Sub(before Load) Load {
	out := Load{Requests: map[string]int64{}, WatchEvents: map[string]int64{}}
	for k, v := range l.Requests {
		if d := v - before.Requests[k]; d != 0 {
			out.Requests[k] = d
		}
	}
	for k, v := range l.WatchEvents {
		if d := v - before.WatchEvents[k]; d != 0 {
			out.WatchEvents[k] = d
		}
	}
	return out
}

// String lists the counts, largest first.
func (l Load) String() string {
	var parts []string
	for _, m := range []map[string]int64{l.Requests, l.WatchEvents} {
		keys := slices.Collect(maps.Keys(m))
		slices.SortFunc(keys, func(a, b string) int { return int(m[b] - m[a]) })
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
		}
	}
	return strings.Join(parts, " ")
}
