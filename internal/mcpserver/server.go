// Package mcpserver offers the sandbox to AI agents over the Model Context
// Protocol, with the official Go SDK: a run_code tool whose result a model
// can read, list_runtimes, and the session tools (create_session,
// run_in_session, the file tools, close_session) for a persistent Python or JavaScript
// kernel. `sandboxd mcp` serves it on stdio; `sandboxd serve` at /mcp over
// streamable HTTP.
package mcpserver

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/runtimes"
	"github.com/sandboxd/sandboxd/internal/session"
)

// MaxCodeBytes caps the code (and each file) a tool call may carry.
const MaxCodeBytes = 1 << 20

// New returns an MCP server with the sandbox's tools. Runs go to r (the
// daemon gives it the executor wrapped in admission, metrics and the run
// log); languages are looked up in reg (default runtimes.Default()).
// Limits a model asks for are checked by r's Plan against its ceilings,
// like any request's. With sessions, it also has the session tools (see
// sessions.go); nil leaves them out.
func New(r run.Runner, reg *runtimes.Registry, version string, sessions *session.Manager) *mcp.Server {
	if reg == nil {
		reg = runtimes.Default()
	}
	instructions := "Run untrusted code safely. Each run_code call runs one program in a fresh, isolated sandbox " +
		"(no network, no access to the host, limited time and memory) and returns its output. Nothing persists between run_code calls."
	if sessions != nil {
		instructions += " For work in steps, where variables, imports and files must persist (data analysis, plots), " +
			"create_session starts a persistent session (" + strings.Join(kernelNames(reg), ", ") + "): run_in_session runs cells in it and returns figures as images, " +
			"upload_file and download_file move files in and out, close_session ends it."
	}
	s := mcp.NewServer(&mcp.Implementation{Name: "sandboxd", Title: "sandboxd code sandbox", Version: version}, &mcp.ServerOptions{
		Instructions: instructions,
	})
	t := &tools{r: r, reg: reg}
	mcp.AddTool(s, described("run_code", &mcp.Tool{
		InputSchema: describe(inputSchema[RunCodeInput](), "language", "the language: "+languages(reg)+"; see list_runtimes"),
		Description: "Run a program in a fresh, isolated sandbox and return its stdout, stderr and exit status. " +
			"The sandbox has no network and nothing of the host; files you pass are in the working directory, " +
			"and files the program writes there come back. Use list_runtimes for the languages. " +
			"A program that fails or hits a limit returns isError with the reason (e.g. \"stopped: memory limit of 256MiB reached\").",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: false, DestructiveHint: ptr(false), IdempotentHint: false, OpenWorldHint: ptr(false)},
	}), t.runCode)
	mcp.AddTool(s, described("list_runtimes", &mcp.Tool{
		Description: "List the languages run_code accepts, with their versions and aliases.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true, OpenWorldHint: ptr(false)},
	}), t.listRuntimes)
	if sessions != nil {
		addSessionTools(s, sessions, reg)
	}
	return s
}

func ptr[T any](v T) *T { return &v }

type tools struct {
	r   run.Runner
	reg *runtimes.Registry
}

// RunCodeInput is run_code's arguments.
type RunCodeInput struct {
	Language string      `json:"language" jsonschema:"the language; see list_runtimes"`
	Code     string      `json:"code" jsonschema:"the program's source code"`
	Stdin    string      `json:"stdin,omitempty" jsonschema:"text given to the program on standard input"`
	Args     []string    `json:"args,omitempty" jsonschema:"command-line arguments for the program"`
	Files    []InputFile `json:"files,omitempty" jsonschema:"extra files placed next to the program in its working directory"`
	Timeout  limitArg    `json:"timeout,omitempty" jsonschema:"wall-clock limit such as 5s or 500ms, or a number of seconds (default 10s)"`
	Memory   limitArg    `json:"memory,omitempty" jsonschema:"memory limit such as 128MiB or 1GiB, or a number of bytes (default 256MiB)"`
}

// InputFile is a text file given to run_code.
type InputFile struct {
	Name    string `json:"name" jsonschema:"a relative path such as data.csv"`
	Content string `json:"content" jsonschema:"the file's text"`
}

// RunCodeOutput is run_code's structured result.
type RunCodeOutput struct {
	Status          string       `json:"status" jsonschema:"ok, exited, signaled, timeout, cpu_limit, memory_limit, output_limit, internal_error or canceled (the call was cancelled before the run ended)"`
	Reason          string       `json:"reason,omitempty" jsonschema:"why a limit or the sandbox stopped the run"`
	ExitCode        int          `json:"exit_code" jsonschema:"the program's exit code; -1 when a signal killed it"`
	Signal          string       `json:"signal,omitempty" jsonschema:"the signal that killed the program, e.g. SIGSEGV"`
	Stdout          string       `json:"stdout"`
	Stderr          string       `json:"stderr"`
	StdoutTruncated bool         `json:"stdout_truncated,omitempty"`
	StderrTruncated bool         `json:"stderr_truncated,omitempty"`
	WallTimeMS      float64      `json:"wall_time_ms"`
	CPUTimeMS       float64      `json:"cpu_time_ms"`
	PeakMemoryBytes int64        `json:"peak_memory_bytes"`
	Files           []OutputFile `json:"files,omitempty" jsonschema:"files the program created or changed"`
	Language        string       `json:"language"`
	Version         string       `json:"version,omitempty"`
}

// OutputFile is a file the run produced.
type OutputFile struct {
	Name     string `json:"name"`
	Size     int64  `json:"size"`
	Content  string `json:"content,omitempty" jsonschema:"the text, or base64 when encoding says so; empty when too large"`
	Encoding string `json:"encoding,omitempty"`
}

func (t *tools) runCode(ctx context.Context, _ *mcp.CallToolRequest, in RunCodeInput) (*mcp.CallToolResult, RunCodeOutput, error) {
	p, err := t.plan(in)
	if err != nil {
		return nil, RunCodeOutput{}, err
	}
	res, err := t.r.Run(ctx, p, run.Stream{})
	if res == nil {
		return nil, RunCodeOutput{}, fmt.Errorf("the sandbox could not run it: %w", err)
	}
	out := output(res)
	return &mcp.CallToolResult{
		Content: []mcp.Content{&mcp.TextContent{Text: summary(res)}},
		IsError: res.Status != run.StatusOK,
	}, out, nil
}

// plan checks the arguments (errors here are tool errors a model can fix)
// and turns them into a planned run.
func (t *tools) plan(in RunCodeInput) (*run.Plan, error) {
	if strings.TrimSpace(in.Language) == "" {
		return nil, errors.New("language is required; call list_runtimes for the choices")
	}
	if len(in.Code) > MaxCodeBytes {
		return nil, fmt.Errorf("code is %d bytes; the limit is %d", len(in.Code), MaxCodeBytes)
	}
	rt, err := t.reg.Lookup(in.Language)
	if err != nil {
		return nil, err
	}
	name := "main"
	if len(rt.Extensions) > 0 {
		name += rt.Extensions[0]
	}
	spec := &run.Spec{Runtime: rt.Name, Args: in.Args, Files: []run.File{{Name: name, Content: []byte(in.Code)}}}
	if in.Stdin != "" {
		spec.Stdin = []byte(in.Stdin)
	}
	for _, f := range in.Files {
		if len(f.Content) > MaxCodeBytes {
			return nil, fmt.Errorf("file %q is %d bytes; the limit is %d", f.Name, len(f.Content), MaxCodeBytes)
		}
		spec.Files = append(spec.Files, run.File{Name: f.Name, Content: []byte(f.Content)})
	}
	if in.Timeout != "" {
		d, err := limits.ParseDuration(string(in.Timeout))
		if err != nil {
			return nil, fmt.Errorf("timeout: %w", err)
		}
		spec.Limits.Timeout = d
	}
	if in.Memory != "" {
		b, err := limits.ParseBytes(string(in.Memory))
		if err != nil {
			return nil, fmt.Errorf("memory: %w", err)
		}
		spec.Limits.Memory = b
	}
	return t.r.Plan(spec)
}

func output(res *run.Result) RunCodeOutput {
	o := RunCodeOutput{
		Status: string(res.Status), Reason: res.Reason, ExitCode: res.ExitCode, Signal: res.SignalName,
		StdoutTruncated: res.StdoutTruncated, StderrTruncated: res.StderrTruncated,
		WallTimeMS: float64(res.WallTime.Microseconds()) / 1000, CPUTimeMS: float64(res.CPUTime.Microseconds()) / 1000,
		PeakMemoryBytes: res.PeakMemory, Language: res.Runtime, Version: res.Version,
	}
	// Output that is not UTF-8 is shown as text with replacement
	// characters: a model reads text, and the structured bytes are lossy
	// only there.
	o.Stdout = strings.ToValidUTF8(string(res.Stdout), "\uFFFD")
	o.Stderr = strings.ToValidUTF8(string(res.Stderr), "\uFFFD")
	for _, f := range res.Files {
		of := OutputFile{Name: f.Name, Size: f.Size}
		of.Content, of.Encoding = run.EncodeBytes(f.Content)
		o.Files = append(o.Files, of)
	}
	return o
}

// summary is the text a model reads: the status in one line, then the
// streams, then the files.
func summary(res *run.Result) string {
	var b strings.Builder
	switch {
	case res.Status == run.StatusOK:
		b.WriteString("exit status 0 (ok)")
	case res.Status == run.StatusExited:
		fmt.Fprintf(&b, "exit status %d", res.ExitCode)
	case res.Status == run.StatusSignaled:
		fmt.Fprintf(&b, "killed by %s", res.SignalName)
	default:
		b.WriteString(res.Reason)
	}
	if res.Compile != nil && res.Compile.Status != run.StatusOK {
		b.WriteString("\n--- compiler output ---\n")
		b.Write(res.Compile.Stderr)
		b.Write(res.Compile.Stdout)
	}
	section := func(name string, data []byte, truncated bool) {
		if len(data) == 0 {
			return
		}
		fmt.Fprintf(&b, "\n--- %s ---\n%s", name, strings.ToValidUTF8(string(data), "\uFFFD"))
		if truncated {
			fmt.Fprintf(&b, "\n[%s truncated at %d bytes]", name, len(data))
		}
	}
	section("stdout", res.Stdout, res.StdoutTruncated)
	section("stderr", res.Stderr, res.StderrTruncated)
	if len(res.Files) > 0 {
		b.WriteString("\n--- files written ---")
		for _, f := range res.Files {
			fmt.Fprintf(&b, "\n%s (%d bytes)", f.Name, f.Size)
		}
	}
	return b.String()
}

// ListRuntimesInput takes no arguments.
type ListRuntimesInput struct{}

// ListRuntimesOutput lists the languages.
type ListRuntimesOutput struct {
	Runtimes []RuntimeInfo `json:"runtimes"`
}

// RuntimeInfo is one language.
type RuntimeInfo struct {
	Language string   `json:"language"`
	Version  string   `json:"version"`
	Aliases  []string `json:"aliases,omitempty"`
	Compiled bool     `json:"compiled,omitempty"`
}

func (t *tools) listRuntimes(ctx context.Context, _ *mcp.CallToolRequest, _ ListRuntimesInput) (*mcp.CallToolResult, ListRuntimesOutput, error) {
	g := t.reg
	var out ListRuntimesOutput
	var lines []string
	for _, rt := range g.All() {
		if !g.Available(rt) {
			continue
		}
		v, err := g.Version(ctx, rt)
		if err != nil {
			continue
		}
		out.Runtimes = append(out.Runtimes, RuntimeInfo{Language: rt.Name, Version: v, Aliases: rt.Aliases, Compiled: rt.Compile != nil})
		line := rt.Name + " " + v
		if len(rt.Aliases) > 0 {
			line += " (also: " + strings.Join(rt.Aliases, ", ") + ")"
		}
		lines = append(lines, line)
	}
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: strings.Join(lines, "\n")}}}, out, nil
}
