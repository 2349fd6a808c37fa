package driver

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"netpolbench/agent"
	"netpolbench/policy"
	"netpolbench/workloads"
)

// podImage is the image of every pod the driver writes; nothing ever pulls it.
const podImage = "registry.k8s.io/pause:3.10"

// Write is one churn event as written through the API server.
type Write struct {
	Event policy.EventKind
	// Kind and Key name the object written ("namespace/name"; a namespace by its name).
	Kind agent.Kind
	Key  string
	// Start is when the first request was sent, Ack when the last was acknowledged.
	Start, Ack time.Time
	// ResourceVersion is the object's version the last request left ("" for a deletion).
	ResourceVersion string
	// Requests is how many API requests the event took (a pod add is a create and a status
	// update).
	Requests int
	// Seq is the event's index in its run (Run sets it).
	Seq int
}

// Writer writes the suite's objects through an API server as users and kubelets would: pods
// are created without an address, then get status.podIP through the status subresource.
type Writer struct {
	Client kubernetes.Interface
	// SchedulerName, when set, is written into every pod's spec: on a real cluster, a name no
	// scheduler serves keeps the pods off every node, so no kubelet acts on them.
	SchedulerName string
}

// WriteCluster writes a generated cluster: its namespaces, then its pods (each created, then
// given its address) and policies by workers concurrent writers. Objects that exist already
// are an error.
func (w *Writer) WriteCluster(ctx context.Context, g *workloads.Generated, workers int) error {
	for _, ns := range g.Namespaces {
		if _, err := w.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("write namespace %s: %w", ns.Name, err)
		}
	}
	jobs := make(chan func() error)
	errc := make(chan error, 1)
	var wg sync.WaitGroup
	for range max(workers, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for job := range jobs {
				if err := job(); err != nil {
					select {
					case errc <- err:
					default:
					}
				}
			}
		}()
	}
	send := func(job func() error) bool {
		select {
		case jobs <- job:
			return true
		case err := <-errc:
			errc <- err
			return false
		case <-ctx.Done():
			return false
		}
	}
	func() {
		defer close(jobs)
		for _, p := range g.Pods {
			if !send(func() error { _, err := w.createPod(ctx, p); return err }) {
				return
			}
		}
		for _, np := range g.Policies {
			if !send(func() error {
				if _, err := w.Client.NetworkingV1().NetworkPolicies(np.Namespace).Create(ctx, np, metav1.CreateOptions{}); err != nil {
					return fmt.Errorf("write networkpolicy %s/%s: %w", np.Namespace, np.Name, err)
				}
				return nil
			}) {
				return
			}
		}
	}()
	wg.Wait()
	return firstError(ctx, errc)
}

// createPod creates a pod and then writes its status (address, phase Running) as its kubelet
// would; it returns the resource version the status write left.
func (w *Writer) createPod(ctx context.Context, p *corev1.Pod) (string, error) {
	pods := w.Client.CoreV1().Pods(p.Namespace)
	ip := p.Status.PodIP
	obj := p.DeepCopy()
	obj.Status = corev1.PodStatus{}
	obj.TypeMeta = metav1.TypeMeta{}
	if w.SchedulerName != "" {
		obj.Spec.SchedulerName = w.SchedulerName
	}
	created, err := pods.Create(ctx, obj, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("write pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	created.Status.Phase = corev1.PodRunning
	created.Status.PodIP = ip
	created.Status.PodIPs = []corev1.PodIP{{IP: ip}}
	done, err := pods.UpdateStatus(ctx, created, metav1.UpdateOptions{})
	if err != nil {
		return "", fmt.Errorf("write pod %s/%s status: %w", p.Namespace, p.Name, err)
	}
	return done.ResourceVersion, nil
}

// ApplyAll writes events as fast as workers concurrent writers can, each object's events in
// order by one writer (as Run does, unpaced and unmeasured), and returns the first error.
func (w *Writer) ApplyAll(ctx context.Context, evs []policy.Event, workers int) error {
	workers = max(workers, 1)
	queues := make([]chan policy.Event, workers)
	errc := make(chan error, workers)
	var wg sync.WaitGroup
	for i := range queues {
		queues[i] = make(chan policy.Event, 64)
		wg.Add(1)
		go func(q chan policy.Event) {
			defer wg.Done()
			failed := false
			for ev := range q {
				if failed {
					continue
				}
				if _, err := w.Apply(ctx, ev); err != nil {
					errc <- err
					failed = true
				}
			}
		}(queues[i])
	}
	for _, ev := range evs {
		if ctx.Err() != nil {
			break
		}
		queues[writerOf(ev, workers)] <- ev
	}
	for _, q := range queues {
		close(q)
	}
	wg.Wait()
	return firstError(ctx, errc)
}

// PodObject is the Kubernetes object of a pod of the suite's model, with its address in
// status.podIP (which the API server ignores on create: createPod writes it afterwards).
func PodObject(p *policy.Pod) *corev1.Pod {
	c := corev1.Container{Name: "app", Image: podImage}
	for _, cp := range p.Ports {
		c.Ports = append(c.Ports, corev1.ContainerPort{Name: cp.Name, ContainerPort: int32(cp.Port), Protocol: corev1.Protocol(cp.Protocol.String())})
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name, Labels: p.Labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{c}},
		Status:     corev1.PodStatus{PodIP: p.IP.String()},
	}
}

// Apply writes one churn event. A pod add is a create and a status write; a relabel replaces
// the pod's or namespace's labels, a policy update the policy's spec (JSON patches, so no read
// comes first); deletions delete at once.
func (w *Writer) Apply(ctx context.Context, ev policy.Event) (Write, error) {
	wr := Write{Event: ev.Kind, Start: time.Now(), Requests: 1}
	var err error
	switch ev.Kind {
	case policy.PodAdd:
		wr.Kind, wr.Key, wr.Requests = agent.KindPod, ev.Pod.Key(), 2
		wr.ResourceVersion, err = w.createPod(ctx, PodObject(ev.Pod))
	case policy.PodDelete:
		wr.Kind, wr.Key = agent.KindPod, ev.PodKey
		ns, name := split(ev.PodKey)
		err = w.Client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
	case policy.PodRelabel:
		wr.Kind, wr.Key = agent.KindPod, ev.PodKey
		ns, name := split(ev.PodKey)
		var p *corev1.Pod
		if p, err = w.Client.CoreV1().Pods(ns).Patch(ctx, name, types.JSONPatchType, replace("/metadata/labels", ev.Labels), metav1.PatchOptions{}); err == nil {
			wr.ResourceVersion = p.ResourceVersion
		}
	case policy.PolicyAdd:
		wr.Kind, wr.Key = agent.KindNetworkPolicy, ev.Policy.Namespace+"/"+ev.Policy.Name
		var np *networkingv1.NetworkPolicy
		if np, err = w.Client.NetworkingV1().NetworkPolicies(ev.Policy.Namespace).Create(ctx, ev.Policy, metav1.CreateOptions{}); err == nil {
			wr.ResourceVersion = np.ResourceVersion
		}
	case policy.PolicyUpdate:
		wr.Kind, wr.Key = agent.KindNetworkPolicy, ev.Policy.Namespace+"/"+ev.Policy.Name
		var np *networkingv1.NetworkPolicy
		if np, err = w.Client.NetworkingV1().NetworkPolicies(ev.Policy.Namespace).Patch(ctx, ev.Policy.Name, types.JSONPatchType, replace("/spec", ev.Policy.Spec), metav1.PatchOptions{}); err == nil {
			wr.ResourceVersion = np.ResourceVersion
		}
	case policy.PolicyRemove:
		wr.Kind, wr.Key = agent.KindNetworkPolicy, ev.PolicyKey
		ns, name := split(ev.PolicyKey)
		err = w.Client.NetworkingV1().NetworkPolicies(ns).Delete(ctx, name, metav1.DeleteOptions{})
	case policy.NamespaceRelabel:
		wr.Kind, wr.Key = agent.KindNamespace, ev.Namespace
		lbl := map[string]string{}
		for k, v := range ev.Labels {
			lbl[k] = v
		}
		lbl[policy.NamespaceNameLabel] = ev.Namespace // the API server insists on it
		var ns *corev1.Namespace
		if ns, err = w.Client.CoreV1().Namespaces().Patch(ctx, ev.Namespace, types.JSONPatchType, replace("/metadata/labels", lbl), metav1.PatchOptions{}); err == nil {
			wr.ResourceVersion = ns.ResourceVersion
		}
	default:
		err = fmt.Errorf("unknown event kind %d", ev.Kind)
	}
	wr.Ack = time.Now()
	if err != nil {
		return wr, fmt.Errorf("write %s %s: %w", ev.Kind, wr.Key, err)
	}
	return wr, nil
}

func split(key string) (ns, name string) {
	ns, name, _ = strings.Cut(key, "/")
	return ns, name
}

// replace is a JSON patch that sets the value at path, whether or not the object has one
// ("add" replaces an existing member).
func replace(path string, value any) []byte {
	b, err := json.Marshal([]map[string]any{{"op": "add", "path": path, "value": value}})
	if err != nil {
		panic(fmt.Sprintf("encode patch of %s: %v", path, err)) // maps and API structs always encode
	}
	return b
}

// firstError is the first error a writer sent on errc, or else the context's (nil when it was
// not cancelled).
func firstError(ctx context.Context, errc <-chan error) error {
	select {
	case err := <-errc:
		return err
	default:
	}
	return ctx.Err()
}
