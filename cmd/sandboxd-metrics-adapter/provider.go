package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
	"k8s.io/metrics/pkg/apis/custom_metrics"

	"sigs.k8s.io/custom-metrics-apiserver/pkg/provider"
)

// Metric is the one metric the adapter serves, for pods: each sandboxd
// pod's runs and session cells waiting for a slot, read from its /metrics.
const Metric = "sandboxd_queue_depth"

// maxScrape bounds what one pod's /metrics may send (a few tens of KiB in
// practice).
const maxScrape = 4 << 20

// maxParallel bounds the scrapes in flight for one query.
const maxParallel = 16

var podsResource = schema.GroupResource{Resource: "pods"}

// queueProvider serves Metric for the sandboxd pods of one namespace. It
// reads the metric when asked (the HPA asks every 15 s or so), so a value
// is never older than the query, and it keeps no state between queries.
type queueProvider struct {
	client    kubernetes.Interface
	namespace string
	// selector picks the sandboxd pods; the token goes to those alone,
	// whatever selector a query brings.
	selector labels.Selector
	// portName is the container port serving /metrics.
	portName string
	// tokenFile holds sandboxd's bearer token (the first one, if several);
	// it is read at every query, so a rotated Secret is picked up.
	tokenFile string
	http      *http.Client
	now       func() time.Time
}

var _ provider.CustomMetricsProvider = (*queueProvider)(nil)

func (p *queueProvider) ListAllMetrics() []provider.CustomMetricInfo {
	return []provider.CustomMetricInfo{{GroupResource: podsResource, Namespaced: true, Metric: Metric}}
}

// serves reports whether the query is for Metric of pods in p's namespace.
func (p *queueProvider) serves(namespace string, info provider.CustomMetricInfo) error {
	gr := info.GroupResource
	if gr.Group != "" || (gr.Resource != "pods" && gr.Resource != "pod") || info.Metric != Metric {
		return provider.NewMetricNotFoundError(gr, info.Metric)
	}
	if namespace != p.namespace {
		return &apierrors.StatusError{ErrStatus: metav1.Status{
			Status: metav1.StatusFailure, Code: http.StatusNotFound, Reason: metav1.StatusReasonNotFound,
			Message: fmt.Sprintf("%s is served for the sandboxd pods of namespace %q only, not %q", Metric, p.namespace, namespace),
		}}
	}
	return nil
}

func (p *queueProvider) GetMetricByName(ctx context.Context, name types.NamespacedName, info provider.CustomMetricInfo, metricSelector labels.Selector) (*custom_metrics.MetricValue, error) {
	if err := p.serves(name.Namespace, info); err != nil {
		return nil, err
	}
	if !metricSelector.Matches(labels.Set{}) {
		return nil, provider.NewMetricNotFoundForSelectorError(podsResource, info.Metric, name.Name, metricSelector)
	}
	pod, err := p.client.CoreV1().Pods(name.Namespace).Get(ctx, name.Name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	if !p.selector.Matches(labels.Set(pod.Labels)) || !scrapable(pod) {
		return nil, provider.NewMetricNotFoundForError(podsResource, info.Metric, name.Name)
	}
	token, err := p.token()
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	v, err := p.value(ctx, pod, token)
	if err != nil {
		return nil, apierrors.NewServiceUnavailable(err.Error())
	}
	return &v, nil
}

func (p *queueProvider) GetMetricBySelector(ctx context.Context, namespace string, selector labels.Selector, info provider.CustomMetricInfo, metricSelector labels.Selector) (*custom_metrics.MetricValueList, error) {
	if err := p.serves(namespace, info); err != nil {
		return nil, err
	}
	list := &custom_metrics.MetricValueList{}
	if !metricSelector.Matches(labels.Set{}) {
		return list, nil
	}
	pods, err := p.client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: p.selector.String()})
	if err != nil {
		return nil, err
	}
	var targets []*corev1.Pod
	for i := range pods.Items {
		pod := &pods.Items[i]
		if p.selector.Matches(labels.Set(pod.Labels)) && selector.Matches(labels.Set(pod.Labels)) && scrapable(pod) {
			targets = append(targets, pod)
		}
	}
	if len(targets) == 0 {
		return list, nil
	}
	token, err := p.token()
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	values := make([]*custom_metrics.MetricValue, len(targets))
	errs := make([]error, len(targets))
	sem := make(chan struct{}, maxParallel)
	var wg sync.WaitGroup
	for i, pod := range targets {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			v, err := p.value(ctx, pod, token)
			if err != nil {
				errs[i] = err
				return
			}
			values[i] = &v
		})
	}
	wg.Wait()
	// A pod that did not answer is left out: the HPA then assumes the
	// worst for it in each direction (no scale-down on its account, no
	// queue of its own on scale-up). Only when none answered is the query
	// an error, which the HPA shows in its conditions.
	for i, v := range values {
		if v != nil {
			list.Items = append(list.Items, *v)
		} else {
			klog.Warningf("%s/%s: %v", namespace, targets[i].Name, errs[i])
		}
	}
	if len(list.Items) == 0 {
		return nil, apierrors.NewServiceUnavailable(fmt.Sprintf("no sandboxd pod answered for %s: %v", Metric, errors.Join(errs...)))
	}
	return list, nil
}

// scrapable: the pod runs and has an address. A pod being deleted is left
// out as the HPA leaves it out.
func scrapable(pod *corev1.Pod) bool {
	return pod.Status.Phase == corev1.PodRunning && pod.Status.PodIP != "" && pod.DeletionTimestamp == nil
}

// token is the first token of p.tokenFile (the format sandboxd's
// --token-file reads: one a line, # comments).
func (p *queueProvider) token() (string, error) {
	b, err := os.ReadFile(p.tokenFile)
	if err != nil {
		return "", fmt.Errorf("sandboxd's token: %w", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			return line, nil
		}
	}
	return "", fmt.Errorf("sandboxd's token file %s holds no token", p.tokenFile)
}

// value scrapes pod's /metrics for Metric.
func (p *queueProvider) value(ctx context.Context, pod *corev1.Pod, token string) (custom_metrics.MetricValue, error) {
	port, err := metricsPort(pod, p.portName)
	if err != nil {
		return custom_metrics.MetricValue{}, err
	}
	url := "http://" + net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(int(port))) + "/metrics"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return custom_metrics.MetricValue{}, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/plain")
	resp, err := p.http.Do(req)
	if err != nil {
		return custom_metrics.MetricValue{}, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxScrape))
		return custom_metrics.MetricValue{}, fmt.Errorf("scrape %s: %s", url, resp.Status)
	}
	v, err := parseGauge(io.LimitReader(resp.Body, maxScrape), Metric)
	if err != nil {
		return custom_metrics.MetricValue{}, fmt.Errorf("scrape %s: %w", url, err)
	}
	return custom_metrics.MetricValue{
		DescribedObject: custom_metrics.ObjectReference{
			APIVersion: "v1", Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID,
		},
		Metric:    custom_metrics.MetricIdentifier{Name: Metric},
		Timestamp: metav1.NewTime(p.now()),
		Value:     *resource.NewMilliQuantity(int64(math.Round(v*1000)), resource.DecimalSI),
	}, nil
}

// metricsPort is the pod's container port named name.
func metricsPort(pod *corev1.Pod, name string) (int32, error) {
	for _, c := range pod.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name == name {
				return cp.ContainerPort, nil
			}
		}
	}
	return 0, fmt.Errorf("pod %s has no container port named %q", pod.Name, name)
}

// parseGauge reads the value of the unlabelled sample name from a
// Prometheus text exposition.
func parseGauge(r io.Reader, name string) (float64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 || (f[0] != name && f[0] != name+"{}") {
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return 0, fmt.Errorf("%s: bad value %q", name, f[1])
		}
		return v, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no %s sample (is this sandboxd?)", name)
}
