package api

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sandboxd/sandboxd/internal/admission"
)

type metrics struct {
	runs     *prometheus.CounterVec
	duration *prometheus.HistogramVec
	rejected *prometheus.CounterVec
}

func newMetrics(reg *prometheus.Registry, gate *admission.Gate) *metrics {
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
	}
	reg.MustRegister(m.runs, m.duration, m.rejected,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sandboxd_runs_active",
			Help: "Runs admitted and not yet finished.",
		}, func() float64 { return float64(gate.Running()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sandboxd_queue_depth",
			Help: "Runs waiting for a slot.",
		}, func() float64 { return float64(gate.Waiting()) }),
	)
	return m
}
