package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	cmv1beta2 "k8s.io/metrics/pkg/apis/custom_metrics/v1beta2"
)

// TestServesTheAPI: the whole program, as the kube-apiserver's aggregator
// and the HPA controller see it: its HTTPS custom.metrics.k8s.io/v1beta2
// answers the HPA's query (the StatefulSet's selector) with the pod's
// queue depth, having asked the API server whether the caller may (a
// SubjectAccessReview, as every aggregated API server does). The API
// server is a fake that lists one pod and allows every review.
func TestServesTheAPI(t *testing.T) {
	fp := newFakePod(t, "tok", 7)
	p := pod(t, ns, "sandboxd-0", sandboxdLabels, fp)
	var reviews atomic.Int64
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/api/v1/namespaces/"+ns+"/pods":
			json.NewEncoder(w).Encode(&corev1.PodList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "PodList"}, Items: []corev1.Pod{*p}})
		case r.Method == http.MethodPost && r.URL.Path == "/apis/authorization.k8s.io/v1/subjectaccessreviews":
			var sar authorizationv1.SubjectAccessReview
			if err := json.NewDecoder(r.Body).Decode(&sar); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			reviews.Add(1)
			sar.Status.Allowed = true
			w.WriteHeader(http.StatusCreated)
			json.NewEncoder(w).Encode(&sar)
		default:
			http.NotFound(w, r)
		}
	}))
	defer api.Close()
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "`+api.URL+`"}}]
users: [{name: u, user: {token: adapter}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{
			"--lister-kubeconfig=" + kubeconfig, "--authentication-kubeconfig=" + kubeconfig, "--authorization-kubeconfig=" + kubeconfig,
			"--authentication-skip-lookup", "--bind-address=127.0.0.1", "--secure-port=" + strconv.Itoa(port),
			"--cert-dir=" + filepath.Join(dir, "certs"), "--namespace=" + ns, "--token-file=" + tokenFile(t, "tok\n"),
		})
	}()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("the adapter did not stop with its context")
		}
	}()

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	base := "https://127.0.0.1:" + strconv.Itoa(port) + "/apis/custom.metrics.k8s.io/v1beta2/namespaces/" + ns + "/pods/*/"
	query := "?labelSelector=app.kubernetes.io%2Fname%3Dsandboxd"
	get := func(url string) (int, []byte) {
		resp, err := client.Get(url)
		if err != nil {
			return 0, []byte(err.Error())
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	var code int
	var body []byte
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		select {
		case err := <-done:
			t.Fatalf("the adapter stopped: %v", err)
		default:
		}
		if code, body = get(base + Metric + query); code == http.StatusOK {
			break
		}
	}
	if code != http.StatusOK {
		t.Fatalf("the HPA's query: %d %s", code, body)
	}
	var list cmv1beta2.MetricValueList
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	if len(list.Items) != 1 || list.Items[0].DescribedObject.Name != "sandboxd-0" || list.Items[0].Metric.Name != Metric || list.Items[0].Value.MilliValue() != 7000 {
		t.Errorf("the HPA's query answered %s", body)
	}
	if reviews.Load() == 0 {
		t.Error("no SubjectAccessReview: the caller's rights were not checked")
	}
	if code, body := get(base + "sandboxd_runs_active" + query); code != http.StatusNotFound {
		t.Errorf("another metric: %d %s, want 404", code, body)
	}
}
