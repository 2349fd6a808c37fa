package driver

import "testing"

func TestParseLoadSumsCountersOverOtherLabels(t *testing.T) {
	text := []byte(`# HELP apiserver_request_total Counter of apiserver requests
# TYPE apiserver_request_total counter
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="",verb="POST",version="v1"} 12
apiserver_request_total{code="409",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="",verb="POST",version="v1"} 3
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="status",verb="PUT",version="v1"} 7
apiserver_request_total{code="0",component="apiserver",dry_run="",group="networking.k8s.io",resource="networkpolicies",scope="cluster",subresource="",verb="WATCH",version="v1"} 2
apiserver_request_duration_seconds_count{resource="pods",verb="POST"} 99
apiserver_watch_events_total{group="",resource="pods",version="v1"} 40
apiserver_watch_events_total{group="",resource="pods",version="v2"} 2
apiserver_watch_events_total{group="x",resource="odd\"res",version="v1"} 1.5e1
`)
	l := parseLoad(text)
	for k, want := range map[string]int64{"POST pods": 15, "PUT pods/status": 7, "WATCH networkpolicies": 2} {
		if got := l.Requests[k]; got != want {
			t.Errorf("requests %q = %d, want %d", k, got, want)
		}
	}
	if len(l.Requests) != 3 {
		t.Errorf("requests %v: want 3 keys (durations are not counted)", l.Requests)
	}
	if l.WatchEvents["pods"] != 42 || l.WatchEvents[`odd"res`] != 15 {
		t.Errorf("watch events %v", l.WatchEvents)
	}
	d := l.Sub(Load{Requests: map[string]int64{"POST pods": 5}, WatchEvents: map[string]int64{"pods": 42}})
	if d.Requests["POST pods"] != 10 || d.WatchEvents["pods"] != 0 || len(d.WatchEvents) != 1 {
		t.Errorf("difference %+v", d)
	}
}
