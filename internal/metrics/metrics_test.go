package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestConnectionMetrics: the connection gauge reads its source, and both
// refusal reasons exist before the first refusal (so rate() works).
func TestConnectionMetrics(t *testing.T) {
	m := New(Sources{Conns: func() int { return 7 }})
	scrape := func() string {
		rec := httptest.NewRecorder()
		m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		b, _ := io.ReadAll(rec.Body)
		return string(b)
	}
	for _, want := range []string{
		"sandboxd_connections_open 7\n",
		`sandboxd_connections_refused_total{reason="per_ip"} 0` + "\n",
		`sandboxd_connections_refused_total{reason="total"} 0` + "\n",
	} {
		if got := scrape(); !strings.Contains(got, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	m.ConnRefused("per_ip")
	m.ConnRefused("per_ip")
	if got := scrape(); !strings.Contains(got, `sandboxd_connections_refused_total{reason="per_ip"} 2`+"\n") {
		t.Errorf("two per-IP refusals not counted")
	}
}
