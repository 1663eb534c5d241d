package api

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sandboxd/sandboxd/internal/admission"
	"github.com/sandboxd/sandboxd/internal/pool"
	"github.com/sandboxd/sandboxd/internal/session"
)

type metrics struct {
	runs     *prometheus.CounterVec
	duration *prometheus.HistogramVec
	rejected *prometheus.CounterVec
	// cells counts session cells by status.
	cells *prometheus.CounterVec
}

func newMetrics(reg *prometheus.Registry, gate *admission.Gate, sessions *session.Manager) *metrics {
	m := &metrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandboxd_runs_total",
			Help: "Runs finished, by status and runtime.",
		}, []string{"status", "runtime"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sandboxd_run_duration_seconds",
			Help:    "Wall time of runs from admission to result, by runtime.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"runtime"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandboxd_requests_rejected_total",
			Help: "Requests refused before running, by reason (queue_full, invalid, too_large, unauthorized).",
		}, []string{"reason"}),
		cells: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandboxd_session_cells_total",
			Help: "Session cells finished, by status.",
		}, []string{"status"}),
	}
	// Every reason exists from the start, so rate() works before the
	// first rejection.
	for _, reason := range []string{"queue_full", "invalid", "too_large", "unauthorized"} {
		m.rejected.WithLabelValues(reason)
	}
	reg.MustRegister(m.runs, m.duration, m.rejected, m.cells,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sandboxd_runs_active",
			Help: "Runs admitted and not yet finished.",
		}, func() float64 { return float64(gate.Running()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sandboxd_queue_depth",
			Help: "Runs waiting for a slot.",
		}, func() float64 { return float64(gate.Waiting()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sandboxd_sessions_active",
			Help: "Live sessions (idle, busy or dead but not yet deleted).",
		}, func() float64 {
			if sessions == nil {
				return 0
			}
			return float64(sessions.Count())
		}),
	)
	return m
}

// poolCollector exports the warm pools' figures at scrape time.
type poolCollector struct {
	stats                                  func() map[string]pool.Stats
	ready, size, hits, misses, fails, fill *prometheus.Desc
}

func newPoolCollector(stats func() map[string]pool.Stats) *poolCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, []string{"runtime"}, nil)
	}
	return &poolCollector{
		stats:  stats,
		ready:  d("sandboxd_pool_ready", "Warm sandboxes ready to take a run."),
		size:   d("sandboxd_pool_size", "Warm sandboxes the pool keeps."),
		hits:   d("sandboxd_pool_hits_total", "Runs that took a warm sandbox."),
		misses: d("sandboxd_pool_misses_total", "Runs that found no warm sandbox ready and started cold."),
		fails:  d("sandboxd_pool_refill_failures_total", "Warm sandboxes that failed to start."),
		fill:   d("sandboxd_pool_refill_seconds", "How long the last warm sandbox took to start."),
	}
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.ready, c.size, c.hits, c.misses, c.fails, c.fill} {
		ch <- d
	}
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	for rt, st := range c.stats() {
		ch <- prometheus.MustNewConstMetric(c.ready, prometheus.GaugeValue, float64(st.Ready), rt)
		ch <- prometheus.MustNewConstMetric(c.size, prometheus.GaugeValue, float64(st.Size), rt)
		ch <- prometheus.MustNewConstMetric(c.hits, prometheus.CounterValue, float64(st.Hits), rt)
		ch <- prometheus.MustNewConstMetric(c.misses, prometheus.CounterValue, float64(st.Misses), rt)
		ch <- prometheus.MustNewConstMetric(c.fails, prometheus.CounterValue, float64(st.RefillFailures), rt)
		ch <- prometheus.MustNewConstMetric(c.fill, prometheus.GaugeValue, st.LastRefill.Seconds(), rt)
	}
}
