// Package metrics is sandboxd's Prometheus registry (no globals: one per
// daemon) and the decorator that counts and logs every run a front end
// starts: a run.Runner wrapping the next.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/pool"
	"github.com/sandboxd/sandboxd/internal/run"
)

// Sources are the figures the registry reads at scrape time. Each may be
// nil: its gauges then read 0 (or, for Pools, are absent).
type Sources struct {
	// Running and Waiting are the admission gate's runs in a slot and in
	// its queue.
	Running, Waiting func() int
	// Sessions is the number of live sessions.
	Sessions func() int
	// Pools are the warm pools' figures by runtime.
	Pools func() map[string]pool.Stats
	// Conns is the number of HTTP connections open.
	Conns func() int
	// CellsRunning and CellsWaiting are the session cells' gate's cells
	// in a slot and in its queue.
	CellsRunning, CellsWaiting func() int
	// MemoryBudget is the memory the daemon may promise to runs and
	// sessions; MemoryPromised what it has promised now.
	MemoryBudget, MemoryPromised func() limits.Bytes
}

// Metrics is one daemon's registry. Create it with New.
type Metrics struct {
	reg      *prometheus.Registry
	runs     *prometheus.CounterVec
	duration *prometheus.HistogramVec
	rejected *prometheus.CounterVec
	cells    *prometheus.CounterVec
	refused  *prometheus.CounterVec
	forward  *prometheus.CounterVec
	slowed   prometheus.Counter
}

// Rejection reasons: every one exists from the start, so rate() works
// before the first rejection.
var rejectReasons = []string{"queue_full", "memory_budget", "invalid", "too_large", "unauthorized", "refused_too_often"}

// Reasons a connection is refused: its client's cap, or the daemon's.
var refuseReasons = []string{"per_ip", "total"}

// Outcomes of a request forwarded to the replica holding its session: the
// peer answered (whatever it said), is gone, or did not answer.
var forwardOutcomes = []string{"answered", "gone", "unreachable"}

// New returns a registry with the Go and process collectors and
// sandboxd's own metrics.
func New(src Sources) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
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
			Help: "Requests refused before running, by reason (queue_full, memory_budget, invalid, too_large, unauthorized, forbidden, unsupported_media_type, refused_too_often).",
		}, []string{"reason"}),
		cells: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandboxd_session_cells_total",
			Help: "Session cells finished, by status.",
		}, []string{"status"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandboxd_connections_refused_total",
			Help: "Connections closed as soon as accepted, by the cap they were over (per_ip, total).",
		}, []string{"reason"}),
		forward: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandboxd_requests_forwarded_total",
			Help: "Session requests forwarded to the replica holding the session, by outcome (answered, gone, unreachable).",
		}, []string{"outcome"}),
		slowed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sandboxd_requests_slowed_total",
			Help: "Requests that waited their turn before being read, their client having been refused more often than --refusal-burst and --refusal-rate allow.",
		}),
	}
	for _, o := range forwardOutcomes {
		m.forward.WithLabelValues(o)
	}
	for _, reason := range rejectReasons {
		m.rejected.WithLabelValues(reason)
	}
	for _, reason := range refuseReasons {
		m.refused.WithLabelValues(reason)
	}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.runs, m.duration, m.rejected, m.cells, m.refused, m.forward, m.slowed,
		gauge("sandboxd_runs_active", "Runs admitted and not yet finished.", src.Running),
		gauge("sandboxd_queue_depth", "Work waiting for a slot: runs and session cells together (the figure autoscaling follows).", queueDepth(src.Waiting, src.CellsWaiting)),
		gauge("sandboxd_run_queue_depth", "Runs waiting for a slot.", src.Waiting),
		gauge("sandboxd_sessions_active", "Live sessions (idle, busy or dead but not yet deleted).", src.Sessions),
		gauge("sandboxd_connections_open", "HTTP connections accepted and not yet closed.", src.Conns),
		gauge("sandboxd_session_cells_active", "Session cells admitted and not yet finished.", src.CellsRunning),
		gauge("sandboxd_session_cell_queue_depth", "Session cells, each holding its session's turn, waiting for a slot.", src.CellsWaiting),
		gauge("sandboxd_memory_budget_bytes", "Memory the daemon may promise to runs and sessions together (the sum of their memory limits); its sandboxes' cgroup parent is limited to it.", src.MemoryBudget),
		gauge("sandboxd_memory_promised_bytes", "Memory promised now: the memory limits of the running runs and the live sessions.", src.MemoryPromised),
	)
	if src.Pools != nil {
		m.reg.MustRegister(newPoolCollector(src.Pools))
	}
	return m
}

// gauge is a gauge read from f at scrape time; 0 when f is nil.
func gauge[T ~int | ~int64](name, help string, f func() T) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 {
		if f == nil {
			return 0
		}
		return float64(f())
	})
}

// queueDepth is the work waiting for a slot on either gate: what another
// replica would take on. A cell waiting behind its own session's running
// cell is in neither gate's queue (it holds no turn yet), and rightly so:
// its session is pinned to this replica, and no new replica would serve it.
func queueDepth(runs, cells func() int) func() int {
	return func() int {
		n := 0
		for _, f := range []func() int{runs, cells} {
			if f != nil {
				n += f()
			}
		}
		return n
	}
}

// Handler serves the registry (GET /metrics).
func (m *Metrics) Handler() http.Handler { return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}) }

// Rejected counts a request refused before it ran, by reason (one of
// queue_full, memory_budget, invalid, too_large, unauthorized, forbidden,
// unsupported_media_type, refused_too_often).
func (m *Metrics) Rejected(reason string) { m.rejected.WithLabelValues(reason).Inc() }

// Slowed counts a request held back because its client is refused too
// often.
func (m *Metrics) Slowed() { m.slowed.Inc() }

// ConnRefused counts a connection refused over a cap, by reason (per_ip
// or total).
func (m *Metrics) ConnRefused(reason string) { m.refused.WithLabelValues(reason).Inc() }

// Forwarded counts a request forwarded to another replica, by outcome
// (answered, gone, unreachable).
func (m *Metrics) Forwarded(outcome string) { m.forward.WithLabelValues(outcome).Inc() }

// Cell counts a finished session cell.
func (m *Metrics) Cell(status run.Status) { m.cells.WithLabelValues(string(status)).Inc() }

// poolCollector exports the warm pools' figures at scrape time.
type poolCollector struct {
	stats func() map[string]pool.Stats
	descs []poolDesc
}

// poolDesc is one of a pool's figures: its description and how to read it.
type poolDesc struct {
	desc *prometheus.Desc
	kind prometheus.ValueType
	read func(pool.Stats) float64
}

func newPoolCollector(stats func() map[string]pool.Stats) *poolCollector {
	gauge := func(name, help string, read func(pool.Stats) float64) poolDesc {
		return poolDesc{prometheus.NewDesc(name, help, []string{"runtime"}, nil), prometheus.GaugeValue, read}
	}
	counter := func(name, help string, read func(pool.Stats) uint64) poolDesc {
		return poolDesc{prometheus.NewDesc(name, help, []string{"runtime"}, nil), prometheus.CounterValue,
			func(st pool.Stats) float64 { return float64(read(st)) }}
	}
	return &poolCollector{stats: stats, descs: []poolDesc{
		gauge("sandboxd_pool_ready", "Warm sandboxes ready to take a run.", func(st pool.Stats) float64 { return float64(st.Ready) }),
		gauge("sandboxd_pool_size", "Warm sandboxes the pool aims to keep ready now: its target, set by demand between its minimum and maximum.", func(st pool.Stats) float64 { return float64(st.Target) }),
		gauge("sandboxd_pool_min", "The fewest warm sandboxes the pool keeps (--warm).", func(st pool.Stats) float64 { return float64(st.Min) }),
		gauge("sandboxd_pool_max", "The most warm sandboxes the pool keeps (--warm-max, bounded by the memory budget).", func(st pool.Stats) float64 { return float64(st.Max) }),
		gauge("sandboxd_pool_refills_in_flight", "Warm sandboxes being started.", func(st pool.Stats) float64 { return float64(st.Starting) }),
		gauge("sandboxd_pool_waiting", "Runs waiting for a warm sandbox being started, served first come, first served.", func(st pool.Stats) float64 { return float64(st.Waiting) }),
		gauge("sandboxd_pool_take_rate", "Takes per second the pool sizes itself for (a moving average).", func(st pool.Stats) float64 { return st.Rate }),
		counter("sandboxd_pool_hits_total", "Runs that took a warm sandbox.", func(st pool.Stats) uint64 { return st.Hits }),
		counter("sandboxd_pool_waits_total", "Runs that took a warm sandbox after waiting for one being started.", func(st pool.Stats) uint64 { return st.Waits }),
		counter("sandboxd_pool_misses_total", "Runs that found no warm sandbox ready and started cold.", func(st pool.Stats) uint64 { return st.Misses }),
		counter("sandboxd_pool_refill_failures_total", "Warm sandboxes that failed to start.", func(st pool.Stats) uint64 { return st.RefillFailures }),
		counter("sandboxd_pool_shrunk_total", "Warm sandboxes destroyed after idling above the target.", func(st pool.Stats) uint64 { return st.Shrunk }),
		counter("sandboxd_pool_budget_refusals_total", "Refills not started because the memory budget was promised elsewhere.", func(st pool.Stats) uint64 { return st.BudgetRefusals }),
		gauge("sandboxd_pool_refill_seconds", "How long the last warm sandbox took to start.", func(st pool.Stats) float64 { return st.LastRefill.Seconds() }),
	}}
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d.desc
	}
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	for rt, st := range c.stats() {
		for _, d := range c.descs {
			ch <- prometheus.MustNewConstMetric(d.desc, d.kind, d.read(st), rt)
		}
	}
}
