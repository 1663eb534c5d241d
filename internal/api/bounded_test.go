package api

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/sandboxd/sandboxd/internal/executor"
	"github.com/sandboxd/sandboxd/internal/metrics"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/testenv"
)

// TestHostileNamesBounded: a run spec that names a file, a field, an
// entry, a runtime, a backend or a variable with a MiB of text gets a 400
// whose message is bounded: the name is not echoed whole.
func TestHostileNamesBounded(t *testing.T) {
	x, err := executor.New(executor.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() })
	s := newServer(x, Config{MaxBody: 8 << 20})
	huge := strings.Repeat("n", 1<<20)
	cases := []struct{ name, body string }{
		{"file name", `{"files":[{"name":"` + huge + `.py","content":"x"}]}`},
		{"file name with newlines", `{"files":[{"name":"` + strings.Repeat(`\n`, 1<<19) + `","content":"x"}]}`},
		{"file given twice", `{"files":[{"name":"` + huge[:4000] + `","content":"x"},{"name":"` + huge[:4000] + `","content":"x"}]}`},
		{"unknown field", `{"runtime":"python","code":"x","` + huge + `":1}`},
		{"entry", `{"files":[{"name":"a.py","content":"x"}],"entrypoint":"` + huge + `"}`},
		{"unknown extension", `{"files":[{"name":"a.` + huge[:4000] + `","content":"x"}]}`},
		{"runtime", `{"runtime":"` + huge + `","code":"x"}`},
		{"backend", `{"runtime":"python","code":"x","backend":"` + huge + `"}`},
		{"env", `{"runtime":"python","code":"x","env":{"` + huge + `=":"v"}}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := do(t, s, "POST", "/v1/runs", c.body)
			var eb ErrorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil {
				t.Fatalf("%d: error body is not JSON: %.200q", rec.Code, rec.Body.String())
			}
			if msg := eb.Error.Message; rec.Code != 400 || len(msg) > run.MaxMessage+200 || msg == "" {
				t.Errorf("%d: a message of %d bytes: %.300q", rec.Code, len(msg), msg)
			}
		})
	}
}

// TestRunLogBounded: the run log line's error field is bounded, whatever
// the backend put in the result.
func TestRunLogBounded(t *testing.T) {
	logs := &testenv.LogSizes{}
	r := &metrics.Runner{Next: hostileResult{}, Metrics: metrics.New(metrics.Sources{}), Log: slog.New(logs)}
	p, _ := r.Plan(&run.Spec{})
	if _, err := r.Run(t.Context(), p, run.Stream{}); err != nil {
		t.Fatal(err)
	}
	if logs.Longest() == 0 || logs.Longest() > run.MaxMessage+300 {
		t.Errorf("a log record of %d bytes", logs.Longest())
	}
}

// hostileResult is a runner whose result carries an error of a MiB, as
// one built by hand from a sandbox's words could.
type hostileResult struct{}

func (hostileResult) Plan(spec *run.Spec) (*run.Plan, error) { return &run.Plan{Spec: spec}, nil }
func (hostileResult) Run(context.Context, *run.Plan, run.Stream) (*run.Result, error) {
	e := strings.Repeat("e", 1<<20)
	return &run.Result{Status: run.StatusInternalError, Error: e, Reason: e}, nil
}
