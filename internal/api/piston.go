package api

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/sandboxd/sandboxd/internal/errdefs"
	"github.com/sandboxd/sandboxd/internal/jsonstream"
	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/output"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/runtimes"
	"github.com/sandboxd/sandboxd/internal/spool"
)

// Piston v2 compatibility: POST /api/v2/execute and GET /api/v2/runtimes
// answer as engineer-man/piston does, so existing Piston clients work
// unchanged. Like Piston, the request decoder ignores fields it does not
// know and reports errors as {"message": "..."} with status 400.

// PistonFile is one file of a Piston request.
type PistonFile struct {
	Name     string `json:"name,omitempty"`
	Content  string `json:"content"`
	Encoding string `json:"encoding,omitempty"` // "utf8" (default), "base64", "hex"
}

// PistonRequest is Piston's execute request; times in ms, memory in bytes,
// -1 for "the server's default".
type PistonRequest struct {
	Language           string       `json:"language"`
	Version            string       `json:"version"`
	Files              []PistonFile `json:"files"`
	Stdin              string       `json:"stdin"`
	Args               []string     `json:"args"`
	CompileTimeout     *float64     `json:"compile_timeout"`
	RunTimeout         *float64     `json:"run_timeout"`
	CompileCPUTime     *float64     `json:"compile_cpu_time"`
	RunCPUTime         *float64     `json:"run_cpu_time"`
	CompileMemoryLimit *float64     `json:"compile_memory_limit"`
	RunMemoryLimit     *float64     `json:"run_memory_limit"`
}

// PistonStage is the run or compile part of Piston's response. Its JSON
// (EncodeJSON) is {"stdout", "stderr", "output", "code", "signal",
// "message", "status", "cpu_time", "wall_time", "memory"}: the output as
// strings (invalid UTF-8 as U+FFFD, as Piston's JavaScript would show it),
// streamed from the result's bytes or spool files, never copied.
type PistonStage struct {
	Stdout, Stderr []byte
	// StdoutFile and StderrFile, when set, hold stdout and stderr instead
	// (the result's spool files).
	StdoutFile, StderrFile *spool.File
	// Output is stdout and stderr interleaved, in parts written as one.
	Output [][]byte
	// OutputFiles[i], when set, holds Output[i] instead (a spool file).
	OutputFiles []*spool.File

	Code     *int
	Signal   *string
	Message  *string
	Status   *string
	CPUTime  int64
	WallTime int64
	Memory   int64
}

// EncodeJSON writes the stage in Piston's shape.
func (st *PistonStage) EncodeJSON(w *jsonstream.Writer) {
	w.BeginObject()
	w.Key("stdout")
	pistonText(w, st.Stdout, st.StdoutFile)
	w.Key("stderr")
	pistonText(w, st.Stderr, st.StderrFile)
	w.Key("output")
	w.BeginString()
	for i, p := range st.Output {
		if i < len(st.OutputFiles) && st.OutputFiles[i] != nil {
			w.StringPartFrom(st.OutputFiles[i].Reader())
		} else {
			w.StringPart(p)
		}
	}
	w.EndString()
	for _, f := range []struct {
		name string
		v    any
	}{
		{"code", st.Code}, {"signal", st.Signal}, {"message", st.Message}, {"status", st.Status},
		{"cpu_time", st.CPUTime}, {"wall_time", st.WallTime}, {"memory", st.Memory},
	} {
		w.Key(f.name)
		w.Value(f.v)
	}
	w.EndObject()
}

// pistonText writes b, or f when it is set, as a JSON string.
func pistonText(w *jsonstream.Writer, b []byte, f *spool.File) {
	if f != nil {
		w.StringFrom(f.Reader())
		return
	}
	w.Bytes(b)
}

// PistonResponse is Piston's execute response.
type PistonResponse struct {
	Language string
	Version  string
	Run      PistonStage
	Compile  *PistonStage
}

// EncodeJSON writes {"language", "version", "run", "compile"}, compile
// only when there was a compile step.
func (r *PistonResponse) EncodeJSON(w *jsonstream.Writer) {
	w.BeginObject()
	w.Key("language")
	w.String(r.Language)
	w.Key("version")
	w.String(r.Version)
	w.Key("run")
	r.Run.EncodeJSON(w)
	if r.Compile != nil {
		w.Key("compile")
		r.Compile.EncodeJSON(w)
	}
	w.EndObject()
}

// PistonRuntime is one entry of Piston's runtimes list.
type PistonRuntime struct {
	Language string   `json:"language"`
	Version  string   `json:"version"`
	Aliases  []string `json:"aliases"`
	Runtime  string   `json:"runtime,omitempty"`
}

type pistonError struct {
	Message string `json:"message"`
}

func pistonFail(w http.ResponseWriter, err error) {
	status, _ := errorBody(err)
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, pistonError{Message: err.Error()})
}

func (s *Server) handlePistonRuntimes(w http.ResponseWriter, r *http.Request) {
	out := []PistonRuntime{}
	for _, rt := range s.runtimeInfos(r.Context()) {
		out = append(out, PistonRuntime{Language: rt.Name, Version: rt.Version, Aliases: rt.Aliases, Runtime: rt.rt.Names.Piston})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handlePistonExecute(w http.ResponseWriter, r *http.Request) {
	var req PistonRequest
	// Piston's clients send no Content-Type (node-fetch says text/plain);
	// the body is JSON either way.
	err := s.decodeBody(r, func(body io.Reader) error {
		if err := json.NewDecoder(body).Decode(&req); err != nil {
			return bodyError(err)
		}
		return nil
	})
	if err != nil {
		if classOf(err) == errdefs.ErrTooLarge {
			s.reject(w, err)
		} else {
			s.metrics.Rejected("invalid")
			pistonFail(w, err)
		}
		return
	}
	p, rt, version, err := s.pistonPlan(r, &req)
	if err != nil {
		s.metrics.Rejected("invalid")
		pistonFail(w, err)
		return
	}
	// Piston's "output" is stdout and stderr interleaved as they came,
	// kept as a run's stream is (both caps' worth), spooled as they are.
	combined := output.New(2*int64(p.Limits.Output), nil, nil)
	combined.SetSpool(s.cfg.Spool)
	res, err := s.runner.Run(r.Context(), p, run.Stream{Stdout: combined, Stderr: combined, Spool: s.cfg.Spool})
	// The run is over and its drains have stopped writing to combined.
	out, _ := combined.Result()
	outFile := combined.File()
	defer outFile.Close()
	if res == nil {
		pistonFail(w, err)
		return
	}
	defer res.Close()
	resp := PistonResponse{Language: rt.Name, Version: version}
	if res.Compile != nil {
		st := pistonStage(res.Compile, nil)
		resp.Compile = &st
	}
	if res.Compile == nil || res.Compile.Status == run.StatusOK {
		resp.Run = pistonStage(res, out)
		if outFile != nil {
			resp.Run.OutputFiles = []*spool.File{outFile}
		}
	} else {
		// Piston answers a failed compile with an empty run stage.
		resp.Run = PistonStage{}
	}
	writeJSON(w, http.StatusOK, &resp)
	s.answered(resultBytes(res) + int64(len(out)))
}

// pistonPlan checks a Piston request as Piston does, maps it onto a spec
// and plans it.
func (s *Server) pistonPlan(r *http.Request, req *PistonRequest) (*run.Plan, *runtimes.Runtime, string, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{errdefs.ErrInvalidArgument}, a...)...)
	}
	if req.Language == "" {
		return nil, nil, "", bad("language is required as a string")
	}
	if req.Version == "" {
		return nil, nil, "", bad("version is required as a string")
	}
	if len(req.Files) == 0 {
		return nil, nil, "", bad("files is required as an array")
	}
	g := s.cfg.Runtimes
	rt, err := g.Lookup(req.Language)
	var version string
	if err == nil {
		version, err = g.Version(r.Context(), rt)
	}
	if err != nil || !versionMatches(req.Version, version) {
		return nil, nil, "", bad("%s-%s runtime is unknown", run.Clip(req.Language, run.MaxName), run.Clip(req.Version, run.MaxName))
	}
	spec := &run.Spec{Runtime: rt.Name, Args: req.Args, Stdin: []byte(req.Stdin)}
	for i, f := range req.Files {
		if f.Content == "" {
			return nil, nil, "", bad("files[%d].content is required as a string", i)
		}
		content, err := decodePistonContent(f)
		if err != nil {
			return nil, nil, "", bad("files[%d]: %v", i, err)
		}
		name := f.Name
		if name == "" {
			// Piston names unnamed files itself; the first is the entry.
			name = fmt.Sprintf("file%d.code", i)
			if i == 0 && len(rt.Extensions) > 0 {
				name = "main" + rt.Extensions[0]
			}
		}
		spec.Files = append(spec.Files, run.File{Name: name, Content: content})
	}
	l := &spec.Limits
	cl := &spec.CompileLimits
	l.Timeout = msDuration(req.RunTimeout, 3*time.Second)
	cl.Timeout = msDuration(req.CompileTimeout, 10*time.Second)
	l.CPUTime = msDuration(req.RunCPUTime, 0)
	cl.CPUTime = msDuration(req.CompileCPUTime, 0)
	l.Memory = bytesLimit(req.RunMemoryLimit)
	cl.Memory = bytesLimit(req.CompileMemoryLimit)
	p, err := s.runner.Plan(spec)
	if err != nil {
		return nil, nil, "", err
	}
	return p, rt, version, nil
}

func decodePistonContent(f PistonFile) ([]byte, error) {
	switch f.Encoding {
	case "hex":
		return hex.DecodeString(f.Content)
	case "utf-8":
		return []byte(f.Content), nil
	}
	return run.DecodeBytes(f.Content, f.Encoding)
}

// msDuration maps Piston's milliseconds; absent or -1 means def (0: the
// server's default).
func msDuration(ms *float64, def time.Duration) limits.Duration {
	if ms == nil || *ms == -1 {
		return limits.Duration(def)
	}
	if *ms <= 0 {
		// Not a valid limit; let validation say so.
		return limits.Duration(-1)
	}
	return limits.Duration(time.Duration(*ms * float64(time.Millisecond)))
}

func bytesLimit(b *float64) limits.Bytes {
	if b == nil || *b == -1 {
		return 0
	}
	if *b <= 0 {
		return -1
	}
	return limits.Bytes(*b)
}

// versionMatches accepts "*", "x", the exact version, or a prefix of its
// dot-separated parts with x wildcards ("3", "3.11", "3.x").
func versionMatches(want, have string) bool {
	if want == "*" || want == "x" || want == have {
		return true
	}
	w, h := strings.Split(want, "."), strings.Split(have, ".")
	if len(w) > len(h) {
		return false
	}
	for i := range w {
		if w[i] != "x" && w[i] != "*" && w[i] != h[i] {
			return false
		}
	}
	return true
}

// pistonStage maps a result onto Piston's stage, with Piston's status
// codes: RE (runtime error), SG (signal), TO (timeout), OL (output limit),
// XX (internal error, and a canceled run: Piston has no status for a run
// its caller ended, and XX is its "did not complete"), and a message that
// names our limit or says the run was canceled. interleaved is the
// output in the order it came; nil stands for stdout then stderr.
func pistonStage(res *run.Result, interleaved []byte) PistonStage {
	st := PistonStage{
		Stdout: res.Stdout, Stderr: res.Stderr, StdoutFile: res.StdoutFile, StderrFile: res.StderrFile,
		Output:  [][]byte{interleaved},
		CPUTime: res.CPUTime.Milliseconds(), WallTime: res.WallTime.Milliseconds(), Memory: res.PeakMemory,
	}
	if interleaved == nil {
		st.Output = [][]byte{res.Stdout, res.Stderr}
		if res.StdoutFile != nil || res.StderrFile != nil {
			st.OutputFiles = []*spool.File{res.StdoutFile, res.StderrFile}
		}
	}
	str := func(s string) *string { return &s }
	if res.Signal != 0 {
		st.Signal = str(res.SignalName)
	} else if res.Status != run.StatusInternalError && res.Status != run.StatusCanceled {
		code := res.ExitCode
		st.Code = &code
	}
	switch res.Status {
	case run.StatusExited:
		st.Status = str("RE")
	case run.StatusSignaled, run.StatusMemoryLimit:
		st.Status = str("SG")
	case run.StatusTimeout, run.StatusCPULimit:
		st.Status = str("TO")
	case run.StatusOutputLimit:
		st.Status = str("OL")
	case run.StatusInternalError, run.StatusCanceled:
		st.Status = str("XX")
	}
	if res.Reason != "" {
		st.Message = str(res.Reason)
	}
	if res.Status.LimitHit() && st.Signal == nil {
		st.Signal = str("SIGKILL")
		st.Code = nil
	}
	return st
}
