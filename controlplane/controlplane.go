package controlplane

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"netpolbench/internal/owner"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// KubeVersion is the Kubernetes release the API server is built from (the Makefile's
// K8S_VERSION).
const KubeVersion = "v1.37.2"

// Prefix starts the name of every run directory (under os.TempDir()). Cleanup removes only
// directories whose names start with it.
const Prefix = "npb-cp-"

// ErrNotFound is returned when a binary the control plane needs is missing.
var ErrNotFound = errors.New("control plane binary not found")

// Timeouts of a start. etcd is ready in well under a second here; the API server runs its
// post-start hooks (RBAC bootstrap roles, system namespaces, priority levels) before /readyz
// says ok, a few seconds on 2 cores.
const (
	etcdReadyTimeout      = 15 * time.Second
	apiserverReadyTimeout = 90 * time.Second
	stopGrace             = 10 * time.Second
)

// FindKubeAPIServer returns the kube-apiserver binary: $NETPOLBENCH_KUBE_APISERVER when set,
// else the Makefile's cache path for KubeVersion, else kube-apiserver on PATH.
func FindKubeAPIServer() (string, error) {
	if p := os.Getenv("NETPOLBENCH_KUBE_APISERVER"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%w: NETPOLBENCH_KUBE_APISERVER=%s: %v (run `make controlplane`)", ErrNotFound, p, err)
		}
		return p, nil
	}
	if dir, err := os.UserCacheDir(); err == nil {
		p := filepath.Join(dir, "netpolbench", "kube-apiserver-"+KubeVersion)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("kube-apiserver"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%w: kube-apiserver %s (run `make controlplane` to build it into the cache directory)", ErrNotFound, KubeVersion)
}

// FindEtcd returns etcd on PATH.
func FindEtcd() (string, error) {
	p, err := exec.LookPath("etcd")
	if err != nil {
		return "", fmt.Errorf("%w: etcd (run `make controlplane`, or apt-get install etcd-server)", ErrNotFound)
	}
	return p, nil
}

// Options configure Start. The zero value finds both binaries.
type Options struct {
	// KubeAPIServer and Etcd are the binaries; "" finds them (FindKubeAPIServer, FindEtcd).
	KubeAPIServer, Etcd string
	// APIServerArgs are extra kube-apiserver flags, after the control plane's own.
	APIServerArgs []string
}

// ControlPlane is a running etcd and kube-apiserver. Its methods are safe for concurrent use.
type ControlPlane struct {
	// Dir is the run directory; Kubeconfig the admin kubeconfig in it.
	Dir, Kubeconfig string
	// URL is the API server's address (https://127.0.0.1:port), EtcdURL etcd's client URL.
	URL, EtcdURL string
	// EtcdReady and APIServerReady are how long each took from its start to ready.
	EtcdReady, APIServerReady time.Duration

	pki      *pki
	launcher chan launch
	mu       sync.Mutex
	etcd     *process
	api      *process
	apiArgs  []string
	apiBin   string
	stopped  bool
}

// process is a child process and its fate.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when it exited
	err  error         // why, once done is closed
}

// launch asks the launcher to start a command.
type launch struct {
	cmd *exec.Cmd
	err chan error
}

// Start starts etcd and kube-apiserver on free loopback ports in a new run directory and
// returns once the API server is ready. On failure nothing is left running and the error
// quotes the failing process's log.
func Start(ctx context.Context, opts Options) (_ *ControlPlane, err error) {
	if opts.KubeAPIServer == "" {
		if opts.KubeAPIServer, err = FindKubeAPIServer(); err != nil {
			return nil, err
		}
	}
	if opts.Etcd == "" {
		if opts.Etcd, err = FindEtcd(); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp("", owner.Pattern(Prefix))
	if err != nil {
		return nil, fmt.Errorf("make run directory: %w", err)
	}
	cp := &ControlPlane{Dir: dir, Kubeconfig: filepath.Join(dir, "kubeconfig"), apiBin: opts.KubeAPIServer}
	cp.startLauncher()
	defer func() {
		if err != nil {
			cp.Stop()
		}
	}()
	if cp.pki, err = makePKI(dir); err != nil {
		return nil, err
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	cp.EtcdURL = fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	peer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	cp.URL = fmt.Sprintf("https://127.0.0.1:%d", ports[2])
	etcdArgs := []string{
		"--name=npb", "--data-dir=" + filepath.Join(dir, "etcd"),
		"--listen-client-urls=" + cp.EtcdURL, "--advertise-client-urls=" + cp.EtcdURL,
		"--listen-peer-urls=" + peer, "--initial-advertise-peer-urls=" + peer,
		"--initial-cluster=npb=" + peer, "--initial-cluster-state=new",
		"--logger=zap", "--log-outputs=stderr",
	}
	start := time.Now()
	if cp.etcd, err = cp.spawn("etcd", opts.Etcd, etcdArgs); err != nil {
		return nil, err
	}
	if err := waitReady(ctx, cp.etcd, etcdReadyTimeout, cp.etcdHealthy); err != nil {
		return nil, err
	}
	cp.EtcdReady = time.Since(start)
	cp.apiArgs = append([]string{
		"--etcd-servers=" + cp.EtcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port=" + strconv.Itoa(ports[2]),
		"--cert-dir=" + dir, "--tls-cert-file=" + cp.pki.ServingCert, "--tls-private-key-file=" + cp.pki.ServingKey,
		"--client-ca-file=" + cp.pki.CA,
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + cp.pki.SAPub, "--service-account-signing-key-file=" + cp.pki.SAKey,
		"--service-cluster-ip-range=10.96.0.0/16",
		"--authorization-mode=RBAC",
		// No controller manager makes the default service accounts pods would need, and the
		// loopback address the server advertises is not a valid endpoint.
		"--disable-admission-plugins=ServiceAccount",
		"--endpoint-reconciler-type=none",
		"--profiling=false",
	}, opts.APIServerArgs...)
	if err := cp.startAPIServer(ctx); err != nil {
		return nil, err
	}
	// Written once the server is ready, so a kubeconfig that exists is one that works.
	if err := cp.writeKubeconfig(); err != nil {
		return nil, err
	}
	return cp, nil
}

// startLauncher starts the goroutine that starts the child processes. It holds its OS thread
// until Stop: the children get SIGKILL when the thread that started them ends (the parent-death
// signal is per thread), so a short-lived thread would take them down with it, while a killed
// netpolbench takes them down at once.
func (cp *ControlPlane) startLauncher() {
	cp.launcher = make(chan launch)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		for l := range cp.launcher {
			l.err <- l.cmd.Start()
		}
	}()
}

// spawn starts a child with its output in <dir>/<name>.log and its pid in <dir>/<name>.pid.
func (cp *ControlPlane) spawn(name, bin string, args []string) (*process, error) {
	logPath := filepath.Join(cp.Dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	defer f.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Dir = cp.Dir
	// A process group of its own keeps a terminal's Ctrl-C from reaching the child before
	// netpolbench has stopped the API server ahead of etcd.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	l := launch{cmd: cmd, err: make(chan error, 1)}
	cp.launcher <- l
	if err := <-l.err; err != nil {
		return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	p := &process{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	if err := os.WriteFile(filepath.Join(cp.Dir, name+".pid"), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		cmd.Process.Kill()
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (cp *ControlPlane) startAPIServer(ctx context.Context) error {
	start := time.Now()
	p, err := cp.spawn("kube-apiserver", cp.apiBin, cp.apiArgs)
	if err != nil {
		return err
	}
	cp.mu.Lock()
	cp.api = p
	cp.mu.Unlock()
	if err := waitReady(ctx, p, apiserverReadyTimeout, cp.apiserverReady); err != nil {
		return err
	}
	cp.APIServerReady = time.Since(start)
	return nil
}

// RestartAPIServer stops the API server and starts it again on the same port and etcd, as an
// upgrade or a crash would: every watch breaks, and the new server's watch cache starts
// afresh. It returns how long the API server was unreachable.
func (cp *ControlPlane) RestartAPIServer(ctx context.Context) (time.Duration, error) {
	cp.mu.Lock()
	old := cp.api
	cp.mu.Unlock()
	start := time.Now()
	if err := stopProcess(old); err != nil {
		return 0, err
	}
	if err := cp.startAPIServer(ctx); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// waitReady polls ready until it reports true, the process exits, or the timeout passes.
func waitReady(ctx context.Context, p *process, timeout time.Duration, ready func(context.Context) bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if ready(ctx) {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before it was ready (%v); its log ends:\n%s", p.name, p.err, logTail(p.log, 15))
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %s: %w; its log ends:\n%s", p.name, timeout, ctx.Err(), logTail(p.log, 15))
		case <-tick.C:
		}
	}
}

func (cp *ControlPlane) etcdHealthy(ctx context.Context) bool {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, cp.EtcdURL+"/health", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode == http.StatusOK && bytes.Contains(b, []byte(`"health":"true"`))
}

func (cp *ControlPlane) apiserverReady(ctx context.Context) bool {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, cp.URL+"/readyz", nil)
	resp, err := cp.httpClient().Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode == http.StatusOK
}

// httpClient is an admin client of the API server.
func (cp *ControlPlane) httpClient() *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(cp.pki.caPEM)
	cert, _ := tls.X509KeyPair(cp.pki.adminCertPEM, cp.pki.adminKeyPEM)
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
	}}
}

// RESTConfig is an admin (system:masters) client configuration. Its QPS and Burst are
// client-go's defaults (5 and 10 requests per second): raise them for a writer.
func (cp *ControlPlane) RESTConfig() *rest.Config {
	return &rest.Config{Host: cp.URL, TLSClientConfig: rest.TLSClientConfig{
		CAData: cp.pki.caPEM, CertData: cp.pki.adminCertPEM, KeyData: cp.pki.adminKeyPEM,
	}}
}

func (cp *ControlPlane) writeKubeconfig() error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["netpolbench"] = &clientcmdapi.Cluster{Server: cp.URL, CertificateAuthorityData: cp.pki.caPEM}
	cfg.AuthInfos["netpolbench-admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: cp.pki.adminCertPEM, ClientKeyData: cp.pki.adminKeyPEM}
	cfg.Contexts["netpolbench"] = &clientcmdapi.Context{Cluster: "netpolbench", AuthInfo: "netpolbench-admin"}
	cfg.CurrentContext = "netpolbench"
	if err := clientcmd.WriteToFile(*cfg, cp.Kubeconfig); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	return nil
}

// Stop stops the API server and etcd and removes the run directory. It is safe to call twice.
func (cp *ControlPlane) Stop() error {
	cp.mu.Lock()
	if cp.stopped {
		cp.mu.Unlock()
		return nil
	}
	cp.stopped = true
	api, etcd := cp.api, cp.etcd
	cp.mu.Unlock()
	var errs []error
	for _, p := range []*process{api, etcd} {
		if err := stopProcess(p); err != nil {
			errs = append(errs, err)
		}
	}
	close(cp.launcher)
	if err := os.RemoveAll(cp.Dir); err != nil {
		errs = append(errs, fmt.Errorf("remove run directory: %w", err))
	}
	return errors.Join(errs...)
}

// stopProcess sends SIGTERM, then SIGKILL after stopGrace, and waits for the exit. A process
// that exited by itself is not an error here: Stop is about leaving nothing behind.
func stopProcess(p *process) error {
	if p == nil {
		return nil
	}
	select {
	case <-p.done:
		return nil
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(stopGrace):
	}
	p.cmd.Process.Kill()
	select {
	case <-p.done:
		return nil
	case <-time.After(stopGrace):
		return fmt.Errorf("stop %s (pid %d): still running after SIGKILL", p.name, p.cmd.Process.Pid)
	}
}

// freePorts returns n distinct loopback ports that were free a moment ago. Another process
// may take one before the child binds it; the child then fails to start and says so.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free loopback port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// logTail returns the last n lines of a log file.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
