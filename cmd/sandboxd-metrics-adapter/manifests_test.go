package main

import (
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/scheme"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// deployDir is deploy/kubernetes, from this module's directory.
var deployDir = filepath.Join("..", "..", "deploy", "kubernetes")

// rendered is a kustomization built as kubectl apply -k would, every
// object decoded strictly (an unknown or misspelt field is an error)
// into its Kubernetes type.
type rendered struct {
	objs []runtime.Object
}

func render(t *testing.T, dir string) *rendered {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resmap, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize %s: %v", dir, err)
	}
	sch := runtime.NewScheme()
	if err := scheme.AddToScheme(sch); err != nil {
		t.Fatal(err)
	}
	if err := apiregistrationv1.AddToScheme(sch); err != nil {
		t.Fatal(err)
	}
	dec := serializer.NewCodecFactory(sch, serializer.EnableStrict).UniversalDeserializer()
	r := &rendered{}
	for _, res := range resmap.Resources() {
		y, err := res.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		obj, gvk, err := dec.Decode(y, nil, nil)
		if err != nil {
			t.Errorf("%s %s: %v", res.GetKind(), res.GetName(), err)
			continue
		}
		if gvk.Kind != res.GetKind() {
			t.Errorf("%s decoded as %s", res.GetKind(), gvk.Kind)
		}
		r.objs = append(r.objs, obj)
	}
	return r
}

// one is the object of type T named name; the test fails without it.
func one[T interface {
	runtime.Object
	GetName() string
	GetNamespace() string
}](t *testing.T, r *rendered, name string) T {
	t.Helper()
	var found []T
	for _, o := range r.objs {
		if v, ok := o.(T); ok && v.GetName() == name {
			found = append(found, v)
		}
	}
	if len(found) != 1 {
		var zero T
		t.Fatalf("%d objects of type %T named %s, want 1", len(found), zero, name)
	}
	return found[0]
}

// flag is the value of --name=value among args.
func flag(t *testing.T, args []string, name string) string {
	t.Helper()
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
	}
	t.Fatalf("no --%s in %q", name, args)
	return ""
}

// TestManifests: deploy/kubernetes (the base with the autoscaling
// component) is valid Kubernetes, and its parts agree with each other: the
// HPA scales the StatefulSet on the metric this adapter serves, the adapter
// scrapes the sandboxd pods where they serve /metrics with their token,
// the APIService reaches the adapter, and the adapter holds the rights an
// aggregated API server needs and no more.
func TestManifests(t *testing.T) {
	r := render(t, deployDir)
	sts := one[*appsv1.StatefulSet](t, r, "sandboxd")
	ns := sts.Namespace
	if ns == "" {
		t.Fatal("the StatefulSet has no namespace: the role bindings' subjects need one")
	}
	for _, o := range r.objs {
		m, _ := o.(metav1.Object)
		kind := o.GetObjectKind().GroupVersionKind().Kind
		switch {
		case kind == "ClusterRoleBinding" || kind == "APIService":
			if m.GetNamespace() != "" {
				t.Errorf("cluster-scoped %s %s has namespace %s", kind, m.GetName(), m.GetNamespace())
			}
		case m.GetName() == "sandboxd-metrics-adapter:extension-apiserver-authentication-reader":
			if m.GetNamespace() != "kube-system" {
				t.Errorf("the authentication reader binding is in %q, want kube-system", m.GetNamespace())
			}
		case m.GetNamespace() != ns:
			t.Errorf("%s %s is in %q, not with the StatefulSet in %q", kind, m.GetName(), m.GetNamespace(), ns)
		}
	}

	// The HPA: the StatefulSet, on this adapter's metric, with time for
	// drains.
	hpa := one[*autoscalingv2.HorizontalPodAutoscaler](t, r, "sandboxd")
	ref := hpa.Spec.ScaleTargetRef
	if ref.APIVersion != "apps/v1" || ref.Kind != "StatefulSet" || ref.Name != sts.Name {
		t.Errorf("the HPA scales %+v, want the StatefulSet %s", ref, sts.Name)
	}
	var pods *autoscalingv2.PodsMetricSource
	for _, m := range hpa.Spec.Metrics {
		if m.Type == autoscalingv2.PodsMetricSourceType {
			pods = m.Pods
		}
	}
	switch {
	case pods == nil:
		t.Error("the HPA has no Pods metric")
	case pods.Metric.Name != Metric:
		t.Errorf("the HPA follows %q; the adapter serves %q", pods.Metric.Name, Metric)
	case pods.Target.Type != autoscalingv2.AverageValueMetricType || pods.Target.AverageValue == nil || pods.Target.AverageValue.Sign() <= 0:
		t.Errorf("the HPA's target %+v, want a positive averageValue", pods.Target)
	}
	if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas < 2 || hpa.Spec.MaxReplicas <= *hpa.Spec.MinReplicas {
		t.Errorf("replicas %v to %d: want at least 2 and room to grow", hpa.Spec.MinReplicas, hpa.Spec.MaxReplicas)
	}
	grace := *sts.Spec.Template.Spec.TerminationGracePeriodSeconds
	if b := hpa.Spec.Behavior; b == nil || b.ScaleDown == nil || b.ScaleDown.StabilizationWindowSeconds == nil {
		t.Error("the HPA has no scale-down stabilization window")
	} else {
		if w := int64(*b.ScaleDown.StabilizationWindowSeconds); w < grace {
			t.Errorf("scale-down window %d s, shorter than a drain (terminationGracePeriodSeconds %d)", w, grace)
		}
		for _, p := range b.ScaleDown.Policies {
			if p.Type != autoscalingv2.PodsScalingPolicy || p.Value != 1 || int64(p.PeriodSeconds) < grace {
				t.Errorf("scale-down policy %+v: want one pod per drain (%d s) at most", p, grace)
			}
		}
		if len(b.ScaleDown.Policies) == 0 {
			t.Error("no scale-down policy")
		}
	}

	// The adapter: sandboxd's pods, port and token.
	dep := one[*appsv1.Deployment](t, r, "sandboxd-metrics-adapter")
	if len(dep.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("the adapter's pod has %d containers", len(dep.Spec.Template.Spec.Containers))
	}
	c := dep.Spec.Template.Spec.Containers[0]
	args := append(slices.Clone(c.Command), c.Args...)
	if c.Image != sts.Spec.Template.Spec.Containers[0].Image || c.Command[0] != "/usr/local/bin/sandboxd-metrics-adapter" {
		t.Errorf("the adapter runs %s from %s; deploy/image/build.sh puts it at /usr/local/bin in sandboxd's image %s", c.Command, c.Image, sts.Spec.Template.Spec.Containers[0].Image)
	}
	sel, err := labels.Parse(flag(t, args, "pod-selector"))
	if err != nil || sel.Empty() {
		t.Fatalf("--pod-selector: %v (empty: %v)", err, sel == nil || sel.Empty())
	}
	if !sel.Matches(labels.Set(sts.Spec.Template.Labels)) {
		t.Errorf("--pod-selector %s misses the StatefulSet's pods %v", sel, sts.Spec.Template.Labels)
	}
	if sel.Matches(labels.Set(dep.Spec.Template.Labels)) {
		t.Errorf("--pod-selector %s takes in the adapter's own pods", sel)
	}
	hpaSel, err := metav1.LabelSelectorAsSelector(sts.Spec.Selector)
	if err != nil || !hpaSel.Matches(labels.Set(sts.Spec.Template.Labels)) {
		t.Errorf("the StatefulSet's selector (the HPA's query): %v", err)
	}
	sb := sts.Spec.Template.Spec.Containers[0]
	if _, err := metricsPort(&corev1.Pod{Spec: sts.Spec.Template.Spec}, flag(t, args, "port-name")); err != nil {
		t.Error(err)
	}
	if flag(t, args, "token-file") != flag(t, sb.Args, "token-file") {
		t.Errorf("the adapter reads the token at %s, sandboxd at %s", flag(t, args, "token-file"), flag(t, sb.Args, "token-file"))
	}
	if s, d := secretAt(t, sts.Spec.Template.Spec, sb, flag(t, sb.Args, "token-file")), secretAt(t, dep.Spec.Template.Spec, c, flag(t, args, "token-file")); s != d {
		t.Errorf("the adapter's token comes from Secret %q, sandboxd's from %q", d, s)
	}
	pod := dep.Spec.Template.Spec
	if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot || c.SecurityContext == nil ||
		c.SecurityContext.AllowPrivilegeEscalation == nil || *c.SecurityContext.AllowPrivilegeEscalation || c.SecurityContext.Privileged != nil && *c.SecurityContext.Privileged {
		t.Error("the adapter's pod is not unprivileged: it needs no rights on the node")
	}
	if c.Env[0].Name != "POD_NAMESPACE" || c.Env[0].ValueFrom == nil || c.Env[0].ValueFrom.FieldRef.FieldPath != "metadata.namespace" {
		t.Errorf("the adapter does not learn its namespace: %+v", c.Env)
	}

	// The APIService reaches the adapter's Service, which reaches its pod.
	svc := one[*corev1.Service](t, r, "sandboxd-metrics-adapter")
	api := one[*apiregistrationv1.APIService](t, r, "v1beta2.custom.metrics.k8s.io")
	if api.Spec.Group != "custom.metrics.k8s.io" || api.Spec.Version != "v1beta2" {
		t.Errorf("the APIService is for %s/%s", api.Spec.Group, api.Spec.Version)
	}
	if s := api.Spec.Service; s == nil || s.Name != svc.Name || s.Namespace != svc.Namespace || s.Port == nil || *s.Port != svc.Spec.Ports[0].Port {
		t.Errorf("the APIService points at %+v, the adapter's Service is %s/%s:%d", api.Spec.Service, svc.Namespace, svc.Name, svc.Spec.Ports[0].Port)
	}
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(dep.Spec.Template.Labels)) {
		t.Error("the adapter's Service does not select its pod")
	}
	if tp := svc.Spec.Ports[0].TargetPort; tp.Type != intstr.String || tp.StrVal != c.Ports[0].Name || flag(t, args, "secure-port") != strconv.Itoa(int(c.Ports[0].ContainerPort)) {
		t.Errorf("the Service's target port %v, the container's %+v, the adapter's %v", tp, c.Ports, args)
	}

	// RBAC: the adapter's service account may read pods of its namespace,
	// delegate authentication and authorization, and read the
	// aggregator's CA: an aggregated API server's rights.
	sa := one[*corev1.ServiceAccount](t, r, pod.ServiceAccountName)
	subject := rbacv1.Subject{Kind: "ServiceAccount", Name: sa.Name, Namespace: sa.Namespace}
	bound := func(roleKind, role string) bool {
		for _, o := range r.objs {
			switch b := o.(type) {
			case *rbacv1.RoleBinding:
				if b.RoleRef.Kind == roleKind && b.RoleRef.Name == role && slices.Contains(b.Subjects, subject) {
					return true
				}
			case *rbacv1.ClusterRoleBinding:
				if b.RoleRef.Kind == roleKind && b.RoleRef.Name == role && slices.Contains(b.Subjects, subject) {
					return true
				}
			}
		}
		return false
	}
	if !bound("ClusterRole", "system:auth-delegator") {
		t.Error("no binding of system:auth-delegator to the adapter")
	}
	if !bound("Role", "extension-apiserver-authentication-reader") {
		t.Error("no binding of extension-apiserver-authentication-reader to the adapter")
	}
	role := one[*rbacv1.Role](t, r, "sandboxd-metrics-adapter")
	if !bound("Role", role.Name) {
		t.Error("the adapter's Role is not bound to it")
	}
	for _, rule := range role.Rules {
		if !slices.Equal(rule.APIGroups, []string{""}) || !slices.Equal(rule.Resources, []string{"pods"}) || slices.ContainsFunc(rule.Verbs, func(v string) bool { return v != "get" && v != "list" }) {
			t.Errorf("the adapter's Role grants %+v: pods get and list are all it needs", rule)
		}
	}
}

// TestBaseAlone: deploy/kubernetes/base, for clusters with another
// custom-metrics adapter, is valid on its own and scales on CPU.
func TestBaseAlone(t *testing.T) {
	r := render(t, filepath.Join(deployDir, "base"))
	sts := one[*appsv1.StatefulSet](t, r, "sandboxd")
	hpa := one[*autoscalingv2.HorizontalPodAutoscaler](t, r, "sandboxd")
	if ref := hpa.Spec.ScaleTargetRef; ref.Kind != "StatefulSet" || ref.Name != sts.Name {
		t.Errorf("the base's HPA scales %+v", ref)
	}
	if len(hpa.Spec.Metrics) != 1 || hpa.Spec.Metrics[0].Type != autoscalingv2.ResourceMetricSourceType {
		t.Errorf("the base's HPA: %+v, want CPU alone", hpa.Spec.Metrics)
	}
	for _, o := range r.objs {
		if k := o.GetObjectKind().GroupVersionKind().Kind; k == "APIService" || k == "Deployment" {
			t.Errorf("the base holds a %s", k)
		}
	}
}

// secretAt is the Secret whose key is mounted in c at path.
func secretAt(t *testing.T, pod corev1.PodSpec, c corev1.Container, path string) string {
	t.Helper()
	dir, key := filepath.Split(path)
	for _, m := range c.VolumeMounts {
		if filepath.Clean(m.MountPath) != filepath.Clean(dir) {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name == m.Name && v.Secret != nil {
				if len(v.Secret.Items) > 0 && !slices.ContainsFunc(v.Secret.Items, func(i corev1.KeyToPath) bool { return i.Path == key }) {
					t.Errorf("Secret %s does not put %s at %s", v.Secret.SecretName, key, path)
				}
				return v.Secret.SecretName
			}
		}
	}
	t.Errorf("%s: no Secret mounted at %s", c.Name, dir)
	return ""
}
