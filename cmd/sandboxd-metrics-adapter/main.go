// Command sandboxd-metrics-adapter serves sandboxd's queue depth to the
// Kubernetes HorizontalPodAutoscaler as the pods custom metric
// sandboxd_queue_depth (custom.metrics.k8s.io/v1beta2). It is an
// aggregated API server built on sigs.k8s.io/custom-metrics-apiserver: for
// each query it lists the sandboxd pods of its namespace (by label, through
// the API server) and reads sandboxd_queue_depth from each pod's /metrics
// with sandboxd's token. No Prometheus in between. Deployed by
// deploy/kubernetes/autoscaling; RATIONALE.md, "sandboxd on Kubernetes".
//
// It is a module of its own, so sandboxd's module does not depend on the
// Kubernetes libraries.
package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/component-base/logs"
	"k8s.io/klog/v2"

	basecmd "sigs.k8s.io/custom-metrics-apiserver/pkg/cmd"
)

// saNamespace is where a pod finds its own namespace.
const saNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

func main() {
	logs.InitLogs()
	defer logs.FlushLogs()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		klog.ErrorS(err, "sandboxd-metrics-adapter")
		logs.FlushLogs()
		os.Exit(1)
	}
}

// adapter is the API server (its flags: --secure-port, --cert-dir,
// --lister-kubeconfig, ...) and the flags of the provider.
type adapter struct {
	basecmd.AdapterBase
	namespace, selector, portName, tokenFile string
	timeout                                  time.Duration
}

// run serves until ctx ends. It parses its flags into pflag.CommandLine,
// so it runs once in a process.
func run(ctx context.Context, args []string) error {
	a := &adapter{}
	a.Name = "sandboxd-metrics-adapter"
	fl := a.Flags()
	fl.StringVar(&a.namespace, "namespace", os.Getenv("POD_NAMESPACE"), "namespace of the sandboxd pods (default: $POD_NAMESPACE, else the adapter's own)")
	fl.StringVar(&a.selector, "pod-selector", "app.kubernetes.io/name=sandboxd", "label selector of the sandboxd pods; only these are scraped, and get the token")
	fl.StringVar(&a.portName, "port-name", "http", "name of the sandboxd container's port that serves /metrics")
	fl.StringVar(&a.tokenFile, "token-file", "/etc/sandboxd/token", "file holding sandboxd's bearer token (the first line that is not a # comment), read at every query")
	fl.DurationVar(&a.timeout, "scrape-timeout", 5*time.Second, "how long one pod's /metrics may take")
	logs.AddFlags(fl)
	if err := fl.Parse(args); err != nil {
		return err
	}
	p, err := a.provider()
	if err != nil {
		return err
	}
	a.WithCustomMetrics(p)
	klog.InfoS("serving", "metric", "pods/"+Metric, "namespace", p.namespace, "selector", p.selector.String())
	return a.Run(ctx)
}

func (a *adapter) provider() (*queueProvider, error) {
	ns := a.namespace
	if ns == "" {
		b, err := os.ReadFile(saNamespace)
		if err != nil {
			return nil, fmt.Errorf("no --namespace, no $POD_NAMESPACE, and %w", err)
		}
		ns = strings.TrimSpace(string(b))
	}
	sel, err := labels.Parse(a.selector)
	if err != nil {
		return nil, fmt.Errorf("--pod-selector: %w", err)
	}
	if sel.Empty() {
		return nil, errors.New("--pod-selector is empty: it would send sandboxd's token to every pod of the namespace")
	}
	cfg, err := a.ClientConfig()
	if err != nil {
		return nil, err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	p := &queueProvider{
		client: client, namespace: ns, selector: sel, portName: a.portName, tokenFile: a.tokenFile,
		http: newHTTPClient(a.timeout), now: time.Now,
	}
	if _, err := p.token(); err != nil {
		return nil, err
	}
	return p, nil
}

// newHTTPClient is the scrapers' client: bounded in time, and following no
// redirect (the token goes to the pod's address and nowhere else).
func newHTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport: &http.Transport{
			Proxy:               nil,
			MaxIdleConnsPerHost: 2,
			IdleConnTimeout:     90 * time.Second,
		},
	}
}
