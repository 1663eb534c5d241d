package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/metrics/pkg/apis/custom_metrics"

	"sigs.k8s.io/custom-metrics-apiserver/pkg/provider"
)

const ns = "sandboxd"

var sandboxdLabels = map[string]string{"app.kubernetes.io/name": "sandboxd"}

// fakePod is a pod's /metrics: it answers with its queue depth to the
// right token only, and counts the requests it got.
type fakePod struct {
	srv   *httptest.Server
	depth atomic.Int64
	hits  atomic.Int64
	token atomic.Value
}

func newFakePod(t *testing.T, token string, depth int64) *fakePod {
	t.Helper()
	p := &fakePod{}
	p.depth.Store(depth)
	p.token.Store(token)
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.hits.Add(1)
		if r.URL.Path != "/metrics" || r.Method != http.MethodGet {
			http.NotFound(w, r)
			return
		}
		if r.Header.Get("Authorization") != "Bearer "+p.token.Load().(string) {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		// The neighbours of the metric: a prefix of it and its parts.
		fmt.Fprintf(w, "# HELP sandboxd_queue_depth Work waiting for a slot.\n# TYPE sandboxd_queue_depth gauge\n")
		fmt.Fprintf(w, "sandboxd_queue_depth_extra 99\nsandboxd_run_queue_depth 42\nsandboxd_queue_depth %d\nsandboxd_session_cell_queue_depth 7\n", p.depth.Load())
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// pod is a Running pod whose container port "http" is fp's port on
// 127.0.0.1 (fp nil: a port nothing listens on).
func pod(t *testing.T, namespace, name string, lbls map[string]string, fp *fakePod) *corev1.Pod {
	t.Helper()
	port := 1
	if fp != nil {
		_, p, err := net.SplitHostPort(fp.srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		port, _ = strconv.Atoi(p)
	} else {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: lbls, UID: types.UID("uid-" + name)},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name:  "sandboxd",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: int32(port)}},
		}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "127.0.0.1"},
	}
}

func tokenFile(t *testing.T, content string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func newProvider(t *testing.T, token string, objs ...runtime.Object) *queueProvider {
	t.Helper()
	return &queueProvider{
		client: fake.NewClientset(objs...), namespace: ns,
		selector: labels.SelectorFromSet(sandboxdLabels), portName: "http",
		tokenFile: tokenFile(t, token), http: newHTTPClient(5 * time.Second),
		now: func() time.Time { return time.Unix(1700000000, 0) },
	}
}

var queueInfo = provider.CustomMetricInfo{GroupResource: schema.GroupResource{Resource: "pods"}, Namespaced: true, Metric: Metric}

// values is the list's values by pod name, in milli-units.
func values(t *testing.T, list *custom_metrics.MetricValueList) map[string]int64 {
	t.Helper()
	got := map[string]int64{}
	for _, v := range list.Items {
		if v.DescribedObject.Kind != "Pod" || v.DescribedObject.APIVersion != "v1" || v.DescribedObject.Namespace != ns {
			t.Errorf("described object %+v, want a v1 Pod of %s", v.DescribedObject, ns)
		}
		if v.Metric.Name != Metric {
			t.Errorf("metric %q, want %q", v.Metric.Name, Metric)
		}
		if !v.Timestamp.Equal(&metav1.Time{Time: time.Unix(1700000000, 0)}) {
			t.Errorf("timestamp %v, want the scrape's", v.Timestamp)
		}
		got[v.DescribedObject.Name] = v.Value.MilliValue()
	}
	return got
}

// TestBySelector: the HPA's query (the StatefulSet's selector) gets each
// running sandboxd pod's queue depth, read with the token; pods not
// running, without an address, being deleted or of another namespace are
// not asked.
func TestBySelector(t *testing.T) {
	const token = "s3cret"
	p0, p1 := newFakePod(t, token, 3), newFakePod(t, token, 0)
	pending, deleting, elsewhere := newFakePod(t, token, 5), newFakePod(t, token, 5), newFakePod(t, token, 5)
	pendingPod := pod(t, ns, "sandboxd-2", sandboxdLabels, pending)
	pendingPod.Status.Phase, pendingPod.Status.PodIP = corev1.PodPending, ""
	deletingPod := pod(t, ns, "sandboxd-3", sandboxdLabels, deleting)
	deletingPod.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	pr := newProvider(t, "# sandboxd's tokens\n\n  "+token+"  \nsecond-token\n",
		pod(t, ns, "sandboxd-0", sandboxdLabels, p0),
		pod(t, ns, "sandboxd-1", sandboxdLabels, p1),
		pendingPod, deletingPod,
		pod(t, "other", "sandboxd-0", sandboxdLabels, elsewhere))
	list, err := pr.GetMetricBySelector(context.Background(), ns, labels.SelectorFromSet(sandboxdLabels), queueInfo, labels.Everything())
	if err != nil {
		t.Fatal(err)
	}
	got := values(t, list)
	if len(got) != 2 || got["sandboxd-0"] != 3000 || got["sandboxd-1"] != 0 {
		t.Errorf("values %v, want sandboxd-0: 3, sandboxd-1: 0", got)
	}
	for name, fp := range map[string]*fakePod{"pending": pending, "deleting": deleting, "other namespace": elsewhere} {
		if n := fp.hits.Load(); n != 0 {
			t.Errorf("the %s pod was scraped %d times", name, n)
		}
	}
	// The queue grows: the next query sees it.
	p1.depth.Store(12)
	list, err = pr.GetMetricBySelector(context.Background(), ns, labels.SelectorFromSet(sandboxdLabels), queueInfo, labels.Everything())
	if err != nil {
		t.Fatal(err)
	}
	if got := values(t, list); got["sandboxd-1"] != 12000 {
		t.Errorf("after the queue grew: %v", got)
	}
}

// TestTokenStaysWithSandboxd: a query whose selector takes in other pods
// (or every pod) still sends the token to the sandboxd pods alone.
func TestTokenStaysWithSandboxd(t *testing.T) {
	const token = "s3cret"
	sb := newFakePod(t, token, 1)
	var got atomic.Value
	got.Store("")
	thief := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Store(r.Header.Get("Authorization"))
		fmt.Fprintln(w, "sandboxd_queue_depth 1000")
	}))
	defer thief.Close()
	thiefFP := &fakePod{srv: thief}
	pr := newProvider(t, token,
		pod(t, ns, "sandboxd-0", sandboxdLabels, sb),
		pod(t, ns, "web-0", map[string]string{"app.kubernetes.io/name": "web", "tier": "x"}, thiefFP))
	for _, sel := range []labels.Selector{labels.Everything(), labels.SelectorFromSet(map[string]string{"app.kubernetes.io/name": "web"})} {
		list, err := pr.GetMetricBySelector(context.Background(), ns, sel, queueInfo, labels.Everything())
		if err != nil {
			t.Fatalf("selector %q: %v", sel, err)
		}
		for name := range values(t, list) {
			if name != "sandboxd-0" {
				t.Errorf("selector %q: a value for %s", sel, name)
			}
		}
	}
	if a := got.Load().(string); a != "" {
		t.Errorf("a pod that is not sandboxd got Authorization %q", a)
	}
	if _, err := pr.GetMetricByName(context.Background(), types.NamespacedName{Namespace: ns, Name: "web-0"}, queueInfo, labels.Everything()); !apierrors.IsNotFound(err) {
		t.Errorf("by name, a pod that is not sandboxd: %v, want not found", err)
	}
	if a := got.Load().(string); a != "" {
		t.Errorf("a pod that is not sandboxd got Authorization %q", a)
	}
}

// TestPartialAnswers: a pod that does not answer, or refuses the token,
// is left out and the others still count; when none answers the query
// fails, naming why, so the HPA's conditions say it.
func TestPartialAnswers(t *testing.T) {
	const token = "s3cret"
	ok, wrongToken := newFakePod(t, token, 4), newFakePod(t, "another", 9)
	pr := newProvider(t, token,
		pod(t, ns, "sandboxd-0", sandboxdLabels, ok),
		pod(t, ns, "sandboxd-1", sandboxdLabels, wrongToken),
		pod(t, ns, "sandboxd-2", sandboxdLabels, nil))
	list, err := pr.GetMetricBySelector(context.Background(), ns, labels.Everything(), queueInfo, labels.Everything())
	if err != nil {
		t.Fatal(err)
	}
	if got := values(t, list); len(got) != 1 || got["sandboxd-0"] != 4000 {
		t.Errorf("values %v, want sandboxd-0 alone, at 4", got)
	}
	ok.srv.Close()
	_, err = pr.GetMetricBySelector(context.Background(), ns, labels.Everything(), queueInfo, labels.Everything())
	if !apierrors.IsServiceUnavailable(err) || !strings.Contains(err.Error(), "401 Unauthorized") {
		t.Errorf("no pod answering: %v, want 503 naming the 401", err)
	}
	// No pod at all is no error: an empty list.
	empty := newProvider(t, token)
	if list, err := empty.GetMetricBySelector(context.Background(), ns, labels.Everything(), queueInfo, labels.Everything()); err != nil || len(list.Items) != 0 {
		t.Errorf("no pods: %v, %v", list, err)
	}
}

// TestTokenRotation: the token file is read at every query, so a new
// Secret reaches the adapter without a restart.
func TestTokenRotation(t *testing.T) {
	fp := newFakePod(t, "old", 2)
	pr := newProvider(t, "old", pod(t, ns, "sandboxd-0", sandboxdLabels, fp))
	name := types.NamespacedName{Namespace: ns, Name: "sandboxd-0"}
	if v, err := pr.GetMetricByName(context.Background(), name, queueInfo, labels.Everything()); err != nil || v.Value.MilliValue() != 2000 {
		t.Fatalf("by name: %v, %v", v, err)
	}
	fp.token.Store("new")
	if _, err := pr.GetMetricByName(context.Background(), name, queueInfo, labels.Everything()); err == nil {
		t.Fatal("the old token still worked")
	}
	if err := os.WriteFile(pr.tokenFile, []byte("new\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if v, err := pr.GetMetricByName(context.Background(), name, queueInfo, labels.Everything()); err != nil || v.Value.MilliValue() != 2000 {
		t.Fatalf("after the rotation: %v, %v", v, err)
	}
	if err := os.WriteFile(pr.tokenFile, []byte("# none\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := pr.GetMetricByName(context.Background(), name, queueInfo, labels.Everything()); err == nil || !strings.Contains(err.Error(), "holds no token") {
		t.Errorf("an empty token file: %v", err)
	}
}

// TestWhatIsServed: the one metric, of pods, in the adapter's namespace;
// anything else is not found. A metric label selector matches the
// metric's (empty) labels or nothing.
func TestWhatIsServed(t *testing.T) {
	fp := newFakePod(t, "t", 1)
	pr := newProvider(t, "t", pod(t, ns, "sandboxd-0", sandboxdLabels, fp))
	all := pr.ListAllMetrics()
	if len(all) != 1 || all[0] != queueInfo {
		t.Errorf("ListAllMetrics = %v, want %v", all, queueInfo)
	}
	ctx := context.Background()
	for _, c := range []struct {
		what      string
		namespace string
		info      provider.CustomMetricInfo
	}{
		{"another metric", ns, provider.CustomMetricInfo{GroupResource: queueInfo.GroupResource, Namespaced: true, Metric: "sandboxd_runs_active"}},
		{"another resource", ns, provider.CustomMetricInfo{GroupResource: schema.GroupResource{Group: "apps", Resource: "statefulsets"}, Namespaced: true, Metric: Metric}},
		{"another namespace", "default", queueInfo},
	} {
		if _, err := pr.GetMetricBySelector(ctx, c.namespace, labels.Everything(), c.info, labels.Everything()); !apierrors.IsNotFound(err) {
			t.Errorf("%s by selector: %v, want not found", c.what, err)
		}
		if _, err := pr.GetMetricByName(ctx, types.NamespacedName{Namespace: c.namespace, Name: "sandboxd-0"}, c.info, labels.Everything()); !apierrors.IsNotFound(err) {
			t.Errorf("%s by name: %v, want not found", c.what, err)
		}
	}
	if n := fp.hits.Load(); n != 0 {
		t.Errorf("queries not served still scraped the pod %d times", n)
	}
	notMatching := labels.SelectorFromSet(map[string]string{"runtime": "python"})
	if list, err := pr.GetMetricBySelector(ctx, ns, labels.Everything(), queueInfo, notMatching); err != nil || len(list.Items) != 0 {
		t.Errorf("a metric selector the metric's labels do not match: %v, %v", list, err)
	}
	if _, err := pr.GetMetricByName(ctx, types.NamespacedName{Namespace: ns, Name: "sandboxd-9"}, queueInfo, labels.Everything()); !apierrors.IsNotFound(err) {
		t.Errorf("a pod that does not exist: %v", err)
	}
}

// TestParseGauge: the exact sample, not one whose name it begins, nor a
// labelled one; a missing or bad sample is an error.
func TestParseGauge(t *testing.T) {
	for _, c := range []struct {
		in   string
		want float64
		ok   bool
	}{
		{"sandboxd_queue_depth_x 5\nsandboxd_queue_depth 2\n", 2, true},
		{"# TYPE sandboxd_queue_depth gauge\nsandboxd_queue_depth{} 3 1700000000000\n", 3, true},
		{"sandboxd_queue_depth 1.5e+01\n", 15, true},
		{"sandboxd_run_queue_depth 4\n", 0, false},
		{`sandboxd_queue_depth{replica="a"} 4` + "\n", 0, false},
		{"sandboxd_queue_depth NaN\n", 0, false},
		{"sandboxd_queue_depth -1\n", 0, false},
		{"<html>not metrics</html>", 0, false},
	} {
		v, err := parseGauge(strings.NewReader(c.in), Metric)
		if (err == nil) != c.ok || (c.ok && v != c.want) {
			t.Errorf("parseGauge(%q) = %v, %v; want %v (ok %v)", c.in, v, err, c.want, c.ok)
		}
	}
}

// TestNoRedirect: a pod answering with a redirect does not lead the
// token elsewhere.
func TestNoRedirect(t *testing.T) {
	var leaked atomic.Bool
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leaked.Store(r.Header.Get("Authorization") != "")
		fmt.Fprintln(w, "sandboxd_queue_depth 1")
	}))
	defer elsewhere.Close()
	redirector := httptest.NewServer(http.RedirectHandler(elsewhere.URL+"/metrics", http.StatusFound))
	defer redirector.Close()
	pr := newProvider(t, "t", pod(t, ns, "sandboxd-0", sandboxdLabels, &fakePod{srv: redirector}))
	if _, err := pr.GetMetricByName(context.Background(), types.NamespacedName{Namespace: ns, Name: "sandboxd-0"}, queueInfo, labels.Everything()); err == nil {
		t.Error("a redirect was followed to a value")
	}
	if leaked.Load() {
		t.Error("the token followed the redirect")
	}
}
