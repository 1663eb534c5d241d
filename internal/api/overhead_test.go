package api

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/sandboxd/sandboxd/internal/run"
)

// nopExec plans as fakeExec does and runs nothing: its Run returns a
// finished result at once, so a request through it costs only what the
// daemon itself adds to a run.
type nopExec struct{ *fakeExec }

func (n nopExec) Run(ctx context.Context, p *run.Plan, s run.Stream) (*run.Result, error) {
	return &run.Result{ID: "r1", Status: run.StatusOK, Runtime: "python", Stdout: []byte("1\n")}, nil
}

// BenchmarkRunOverhead is the daemon's own cost per run (issue 17: at
// most 1 ms): POST /v1/runs over loopback HTTP with keep-alive, through
// the server as the daemon builds it (admission, metrics, the refusal and
// body budgets, JSON both ways), with a runner that takes no time. Its
// baseline, measured in the same run, is the same client against a
// handler that answers a fixed JSON body: what loopback HTTP itself costs.
// The difference is the API's cost per run.
//
//	go test -run '^$' -bench RunOverhead ./internal/api
func BenchmarkRunOverhead(b *testing.B) {
	body := []byte(`{"runtime":"python","code":"print(1)"}`)
	cases := []struct {
		name string
		h    http.Handler
	}{
		{"baseline: loopback HTTP", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"id":"r1","status":"ok","stdout":"1\n"}`))
		})},
		{"POST /v1/runs", newServer(nopExec{newFake()}, Config{})},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			srv := httptest.NewServer(c.h)
			defer srv.Close()
			client := srv.Client()
			url := srv.URL + "/v1/runs"
			b.ReportAllocs()
			for b.Loop() {
				req, err := http.NewRequest("POST", url, bytes.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
	}
}
