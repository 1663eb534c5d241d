package api

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/sandboxd/sandboxd/internal/jsonstream"
	"github.com/sandboxd/sandboxd/internal/run"
)

// Piston's response as encoding/json wrote it before it was streamed: the
// output as Go strings.
type refPistonStage struct {
	Stdout   string  `json:"stdout"`
	Stderr   string  `json:"stderr"`
	Output   string  `json:"output"`
	Code     *int    `json:"code"`
	Signal   *string `json:"signal"`
	Message  *string `json:"message"`
	Status   *string `json:"status"`
	CPUTime  int64   `json:"cpu_time"`
	WallTime int64   `json:"wall_time"`
	Memory   int64   `json:"memory"`
}

type refPistonResponse struct {
	Language string          `json:"language"`
	Version  string          `json:"version"`
	Run      refPistonStage  `json:"run"`
	Compile  *refPistonStage `json:"compile,omitempty"`
}

func refStage(st *PistonStage) refPistonStage {
	return refPistonStage{
		Stdout: string(st.Stdout), Stderr: string(st.Stderr), Output: string(bytes.Join(st.Output, nil)),
		Code: st.Code, Signal: st.Signal, Message: st.Message, Status: st.Status,
		CPUTime: st.CPUTime, WallTime: st.WallTime, Memory: st.Memory,
	}
}

// TestPistonResponseJSON: the streamed Piston response is byte for byte
// what encoding/json wrote for its strings, invalid UTF-8 (U+FFFD), <>&,
// U+2028 and a rune cut between stdout and stderr included.
func TestPistonResponseJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 8))
	const alphabet = "<>&\"\\\x00\x1fa\n\xe2\x80\xa8\xa9\xff\xc3\xa9\xf0\x9f\x98\x80"
	draw := func() []byte {
		b := make([]byte, rng.IntN(64)+rng.IntN(2)*rng.IntN(10<<10))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return b
	}
	statuses := []run.Status{run.StatusOK, run.StatusExited, run.StatusTimeout, run.StatusSignaled, run.StatusInternalError}
	for range 300 {
		res := &run.Result{Status: statuses[rng.IntN(len(statuses))], ExitCode: rng.IntN(3), Reason: string(draw()), Stdout: draw(), Stderr: draw()}
		if res.Status == run.StatusSignaled {
			res.Signal, res.SignalName = 9, "SIGKILL"
		}
		resp := PistonResponse{Language: "python<", Version: "3.11", Run: pistonStage(res, draw())}
		if rng.IntN(2) == 0 {
			st := pistonStage(res, nil)
			resp.Compile = &st
		}
		ref := refPistonResponse{Language: resp.Language, Version: resp.Version, Run: refStage(&resp.Run)}
		if resp.Compile != nil {
			c := refStage(resp.Compile)
			ref.Compile = &c
		}
		want, err := json.Marshal(ref)
		if err != nil {
			t.Fatal(err)
		}
		got, err := jsonstream.Marshal(&resp)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("got  %.1000q\nwant %.1000q", got, want)
		}
	}
}

// TestAnswerDone: every answer with a result reports the output it held,
// once it is written: plain, streamed and Piston; then every request its
// body's bytes, once its handler returned, a refused one's included.
func TestAnswerDone(t *testing.T) {
	var mu sync.Mutex
	var held []int64
	s := newServer(newFake(), Config{AnswerDone: func(n int64) { mu.Lock(); held = append(held, n); mu.Unlock() }})
	code := strings.Repeat("<", 1000)
	body := `{"runtime":"python","code":"` + code + `"}`
	do(t, s, "POST", "/v1/runs", body)
	do(t, s, "POST", "/v1/runs?stream=1", body)
	// Piston's output interleaves stdout and stderr as well.
	piston := `{"language":"python","version":"*","files":[{"content":"` + code + `"}]}`
	do(t, s, "POST", "/api/v2/execute", piston)
	refused := `{"runtime":"python"}`
	do(t, s, "POST", "/v1/runs", refused) // no result: only its body
	mu.Lock()
	defer mu.Unlock()
	b := int64(len(body))
	if want := []int64{1003, b, 1003, b, 2006, int64(len(piston)), int64(len(refused))}; !slices.Equal(held, want) {
		t.Errorf("AnswerDone heard %v, want %v", held, want)
	}
}
