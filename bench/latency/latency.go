// Package latency times repeated calls for the benchmarks and reads
// percentiles off the sorted times.
package latency

import (
	"os"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Measure times n calls of f after warm unmeasured ones, and returns the
// times sorted; the first error stops it.
func Measure(n, warm int, f func() error) ([]time.Duration, error) {
	for range warm {
		if err := f(); err != nil {
			return nil, err
		}
	}
	out := make([]time.Duration, 0, n)
	for range n {
		t := time.Now()
		if err := f(); err != nil {
			return nil, err
		}
		out = append(out, time.Since(t))
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

// Pct is the p-th percentile of sorted times.
func Pct(sorted []time.Duration, p int) time.Duration {
	return sorted[min(len(sorted)-1, len(sorted)*p/100)]
}

// Ms is d in milliseconds, to the microsecond.
func Ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

var phaseRE = regexp.MustCompile(`(\w+)=([0-9.]+[µnm]?s)`)

// AddPhases appends the durations of the runner's "phases=" log line (if
// line has one) to by, and each phase name seen for the first time to
// order.
func AddPhases(line string, by map[string][]time.Duration, order *[]string) {
	_, rest, ok := strings.Cut(line, "phases=")
	if !ok {
		return
	}
	rest, _, _ = strings.Cut(rest, "\n")
	for _, m := range phaseRE.FindAllStringSubmatch(rest, -1) {
		d, err := time.ParseDuration(m[2])
		if err != nil {
			continue
		}
		if _, seen := by[m[1]]; !seen {
			*order = append(*order, m[1])
		}
		by[m[1]] = append(by[m[1]], d)
	}
}

// Load is the machine's load average (the first three fields of
// /proc/loadavg), for a benchmark to print next to its figures.
func Load() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
