package controlplane

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"netpolbench/internal/owner"
	"netpolbench/internal/testenv"
)

// mustStart starts a control plane for the test and stops it when the test ends; without the
// binaries the test skips (fails under CI).
func mustStart(t *testing.T) *ControlPlane {
	t.Helper()
	needBinaries(t)
	cp, err := Start(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cp.Stop(); err != nil {
			t.Error(err)
		}
	})
	return cp
}

// needBinaries skips the test without etcd or kube-apiserver (fails under CI).
func needBinaries(t *testing.T) {
	t.Helper()
	for _, find := range []func() (string, error){FindKubeAPIServer, FindEtcd} {
		if _, err := find(); err != nil {
			testenv.Missing(t, err.Error())
		}
	}
}

// TestControlPlaneServesPodsOnLoopbackAndLeavesNothing: a started control plane serves the
// API through its kubeconfig on 127.0.0.1, survives an API server restart with its data, and
// Stop leaves neither processes nor the run directory.
func TestControlPlaneServesPodsOnLoopbackAndLeavesNothing(t *testing.T) {
	cp := mustStart(t)
	t.Logf("etcd ready in %s, kube-apiserver in %s", cp.EtcdReady, cp.APIServerReady)
	if cp.EtcdReady > 15*time.Second {
		t.Errorf("etcd took %s to be ready, want under 15 s", cp.EtcdReady)
	}
	if !strings.HasPrefix(cp.URL, "https://127.0.0.1:") || !strings.HasPrefix(cp.EtcdURL, "http://127.0.0.1:") {
		t.Errorf("listening on %s and %s, want loopback only", cp.URL, cp.EtcdURL)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", cp.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs := kubernetes.NewForConfigOrDie(cfg)
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "smoke"}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "smoke"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "none"}}}}
	got, err := cs.CoreV1().Pods("smoke").Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create a pod (admission without service accounts): %v", err)
	}
	got.Status.PodIP = "198.18.0.1"
	if _, err := cs.CoreV1().Pods("smoke").UpdateStatus(ctx, got, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	down, err := cp.RestartAPIServer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("API server restarted in %s", down)
	again, err := cs.CoreV1().Pods("smoke").Get(ctx, "p", metav1.GetOptions{})
	if err != nil || again.Status.PodIP != "198.18.0.1" {
		t.Fatalf("after a restart: pod %v, err %v; want its status kept", again, err)
	}
	var pids []int
	for _, p := range []*process{cp.api, cp.etcd} {
		pids = append(pids, p.cmd.Process.Pid)
	}
	if err := cp.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if owner.Alive(pid) {
			t.Errorf("pid %d still runs after Stop", pid)
		}
	}
	if _, err := os.Stat(cp.Dir); !os.IsNotExist(err) {
		t.Errorf("run directory %s still there after Stop (%v)", cp.Dir, err)
	}
}

// TestKilledRunLeavesNothingCleanupCannotRemove starts a control plane in a child process,
// kills the child with SIGKILL, and checks that its etcd and kube-apiserver die with it and
// that Cleanup removes the run directory it left, while it keeps the directory of a live run.
func TestKilledRunLeavesNothingCleanupCannotRemove(t *testing.T) {
	if os.Getenv("NPB_CONTROLPLANE_CHILD") != "" {
		cp, err := Start(context.Background(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		os.Stdout.WriteString(cp.Dir + "\n")
		select {} // until killed
	}
	needBinaries(t)
	// A run of this live process, which Cleanup must keep.
	liveDir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", Prefix, os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(liveDir) })
	child := exec.Command(os.Args[0], "-test.run=^TestKilledRunLeavesNothingCleanupCannotRemove$")
	child.Env = append(os.Environ(), "NPB_CONTROLPLANE_CHILD=1")
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { child.Process.Kill(); child.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("child did not report its run directory: %v", err)
	}
	dir := strings.TrimSpace(line)
	pids := runProcesses(dir)
	if len(pids) != 2 {
		t.Fatalf("child's run %s: found processes %v, want etcd and kube-apiserver", dir, pids)
	}
	child.Process.Kill()
	child.Wait()
	for _, pid := range pids {
		if !waitGone(pid, 10*time.Second) {
			t.Errorf("pid %d of the killed run still runs", pid)
		}
	}
	removed, err := Cleanup(false)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(removed, dir) {
		t.Errorf("Cleanup removed %v, want %s among them", removed, dir)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s still there after Cleanup", dir)
	}
	left, err := Leftovers()
	if err != nil {
		t.Fatal(err)
	}
	kept := false
	for _, l := range left {
		if l.Dir == liveDir && l.PID == os.Getpid() && l.Live {
			kept = true
		}
	}
	if !kept {
		t.Errorf("Cleanup took the live run's control plane too: leftovers now %+v", left)
	}
}
