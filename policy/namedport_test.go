package policy

import (
	"net/netip"
	"testing"

	"k8s.io/apimachinery/pkg/util/intstr"
)

// Two pods declare the port name "http" twice (allowed across containers), in opposite orders.
// A named port resolves to the first declaration, so the pods resolve "http" differently and
// must not share a rule set that resolves it against one of them.
func TestPodsDeclaringANameTwiceInOtherOrdersResolveItApart(t *testing.T) {
	c := NewCluster()
	ports := [][]ContainerPort{
		{{Name: "http", Protocol: ProtoTCP, Port: 8080}, {Name: "http", Protocol: ProtoTCP, Port: 9090}},
		{{Name: "http", Protocol: ProtoTCP, Port: 9090}, {Name: "http", Protocol: ProtoTCP, Port: 8080}},
	}
	for i, name := range []string{"web-1", "web-2", "client"} {
		p := &Pod{Namespace: "x", Name: name, Labels: map[string]string{"app": "web"},
			IP: netip.AddrFrom4([4]byte{198, 18, 0, byte(10 + i)})}
		if i < 2 {
			p.Ports = ports[i]
		}
		if err := c.addPod(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.AddPolicy(ingressPolicy("web-http", nil, intstr.FromString("http"))); err != nil {
		t.Fatal(err)
	}
	s := mustCompile(t, c).State()
	client := mustAddr("198.18.0.12")
	for i, dst := range []string{"198.18.0.10", "198.18.0.11"} {
		for _, port := range []uint16{8080, 9090} {
			f := Flow{Src: client, Dst: mustAddr(dst), Proto: ProtoTCP, Port: port}
			want, ex := c.Evaluate(f)
			if got := s.Verdict(f); got != want {
				t.Errorf("web-%d port %d: compiled %s, reference %s (%s)", i+1, port, got, want, ex)
			}
		}
	}
}
