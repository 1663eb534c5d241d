package mcpserver

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/runtimes"
	"github.com/sandboxd/sandboxd/internal/session"
	"github.com/sandboxd/sandboxd/internal/workspace"
)

// The session tools give a model a notebook: create_session starts a
// persistent Python or JavaScript kernel in its own sandbox, run_in_session runs cells in
// it, upload_file and download_file move files in and out of its working
// directory, close_session ends it. Sessions belong to their owner: the
// bearer token of the HTTP request (session.Owner), or "anonymous" on
// stdio, as in the HTTP API.

// Caps on what one call moves, so that one result stays a reasonable
// message for a model's host.
const (
	// MaxFileBytes caps an upload and a download.
	MaxFileBytes = 8 << 20
	// maxImages and maxImageBytes cap the images of one cell's result.
	maxImages     = 16
	maxImageBytes = 16 << 20
	// maxListEntries caps list_session_files.
	maxListEntries = 1000
)

// sessionTools serves the session tools on one Manager.
type sessionTools struct{ m *session.Manager }

func addSessionTools(s *mcp.Server, m *session.Manager, reg *runtimes.Registry) {
	t := &sessionTools{m: m}
	mcp.AddTool(s, described("create_session", &mcp.Tool{
		InputSchema: describe(inputSchema[CreateSessionInput](), "language",
			"the session's language: "+strings.Join(kernelNames(reg), ", ")+" (default python; numpy, pandas and matplotlib when installed)"),
		Description: "Start a persistent session (Python by default; language names another), like a Jupyter notebook, in its own isolated sandbox and return its session_id. " +
			"Unlike run_code, state persists across run_in_session calls: variables, imports, function definitions and files in the working directory " +
			"(" + workspace.Dir + "). The sandbox has no network and nothing of the host. " +
			"Limits: timeout applies to each cell (wall-clock and CPU time), memory to the whole session (past it the session dies and its variables are lost). " +
			"The session closes itself after idle_timeout without a call, and the server caps how many sessions you may hold: close_session the ones you are done with.",
		Annotations: &mcp.ToolAnnotations{DestructiveHint: ptr(false), OpenWorldHint: ptr(false)},
	}), t.create)
	mcp.AddTool(s, described("run_in_session", &mcp.Tool{
		InputSchema: inputSchema[RunInSessionInput](),
		Description: "Run code (a cell) in the session's language in a session from create_session. Variables and imports from earlier cells are there. " +
			"Returns stdout, stderr, the value of the last line if it is an expression (as in a notebook), and the traceback of an exception. " +
			"Figures (matplotlib plots; plt.show() or a figure left open at the end of the cell) and images passed to display() come back as images. " +
			"An exception or a limit gives isError with the reason. A cell past its timeout is interrupted (as by Ctrl-C: a KeyboardInterrupt in Python) and the session goes on; " +
			"one that ignores the interrupt, or a session past its memory limit, is killed: the session is then dead and its variables are lost.",
		Annotations: &mcp.ToolAnnotations{DestructiveHint: ptr(false), OpenWorldHint: ptr(false)},
	}), t.run)
	mcp.AddTool(s, described("upload_file", &mcp.Tool{
		Description: "Write a file into a session's working directory (" + workspace.Dir + "), where its code can open it by the same relative path. " +
			"Missing directories are created and an existing file is replaced. Content is text, or base64 with encoding \"base64\" for binary data; " +
			"at most 8MiB. Paths are relative, such as data/input.csv: absolute paths, '..' and symlinks are refused.",
		Annotations: &mcp.ToolAnnotations{DestructiveHint: ptr(true), IdempotentHint: true, OpenWorldHint: ptr(false)},
	}), t.upload)
	mcp.AddTool(s, described("download_file", &mcp.Tool{
		Description: "Read a file from a session's working directory (" + workspace.Dir + "), such as one its code wrote. " +
			"A text file comes back as text, a PNG, JPEG, GIF or WebP file as an image, anything else as an embedded binary resource. " +
			"At most 8MiB. Paths are relative, such as out/result.csv: absolute paths, '..' and symlinks are refused. " +
			"A session whose kernel died has lost its files: download what you need while it lives.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true, OpenWorldHint: ptr(false)},
	}), t.download)
	mcp.AddTool(s, described("list_session_files", &mcp.Tool{
		Description: "List the files and directories in a session's working directory (" + workspace.Dir + ") or in one of its directories, with their sizes.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true, OpenWorldHint: ptr(false)},
	}), t.listFiles)
	mcp.AddTool(s, described("list_sessions", &mcp.Tool{
		Description: "List the sessions you hold, with their state (idle or dead), cell count and when each expires.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true, OpenWorldHint: ptr(false)},
	}), t.list)
	mcp.AddTool(s, described("close_session", &mcp.Tool{
		Description: "Close a session: its kernel is stopped and its variables and files are deleted. Download the files you need first.",
		Annotations: &mcp.ToolAnnotations{DestructiveHint: ptr(true), OpenWorldHint: ptr(false)},
	}), t.close)
}

// owner is the owner of a call's sessions: the digest of its bearer token
// over HTTP (the API checked the token before the MCP handler saw it),
// "anonymous" on stdio or without a token.
func owner(req *mcp.CallToolRequest) string {
	if req != nil && req.Extra != nil && req.Extra.Header != nil {
		return session.Owner(req.Extra.Header.Get("Authorization"))
	}
	return session.Owner("")
}

// get finds the caller's session, or says how to go on without it.
func (t *sessionTools) get(req *mcp.CallToolRequest, id string) (*session.Session, error) {
	if strings.TrimSpace(id) == "" {
		return nil, errors.New("session_id is required: create_session returns one")
	}
	s, err := t.m.Get(owner(req), id)
	if err != nil {
		return nil, hint(err)
	}
	return s, nil
}

// hint adds to an error what a model can do about it, by its class.
func hint(err error) error {
	var elsewhere *session.ElsewhereError
	switch {
	case errors.As(err, &elsewhere):
		return err
	case errors.Is(err, session.ErrNotFound):
		return fmt.Errorf("%w; list_sessions shows yours, create_session starts a new one", err)
	case errors.Is(err, session.ErrDead):
		return fmt.Errorf("%w; its variables and files are lost: close_session it and create_session a new one", err)
	case errors.Is(err, session.ErrTooMany):
		return fmt.Errorf("%w (close_session one you are done with; list_sessions shows them)", err)
	case errors.Is(err, workspace.ErrBadFileName):
		return fmt.Errorf("%w; give a path relative to the session's working directory %s, such as data/input.csv", err, workspace.Dir)
	case errors.Is(err, workspace.ErrFileNotFound):
		return fmt.Errorf("%w; list_session_files shows what is there", err)
	}
	return err
}

// CreateSessionInput is create_session's arguments.
type CreateSessionInput struct {
	Language    string      `json:"language,omitempty" jsonschema:"the session's language"`
	Timeout     limitArg    `json:"timeout,omitempty" jsonschema:"each cell's wall-clock and CPU time limit, such as 30s or 2m, or a number of seconds (default 10s)"`
	Memory      limitArg    `json:"memory,omitempty" jsonschema:"memory limit of the whole session, such as 512MiB or 1GiB, or a number of bytes (default 256MiB); past it the session dies"`
	IdleTimeout limitArg    `json:"idle_timeout,omitempty" jsonschema:"the session closes after this long without a call, such as 30m, or a number of seconds (default 10m, at most 1h)"`
	CPUBudget   limitArg    `json:"cpu_budget,omitempty" jsonschema:"CPU time the whole session may use, background processes included, such as 20m (default 10m); past it the session dies"`
	Files       []InputFile `json:"files,omitempty" jsonschema:"text files written into the working directory before the session starts"`
}

// SessionOutput describes a session.
type SessionOutput struct {
	SessionID   string `json:"session_id" jsonschema:"the id to pass to the other session tools"`
	Language    string `json:"language"`
	Version     string `json:"version"`
	State       string `json:"state" jsonschema:"idle, busy (running a cell) or dead"`
	Reason      string `json:"reason,omitempty" jsonschema:"why a dead session died"`
	Cells       int    `json:"cells" jsonschema:"how many cells it ran"`
	Timeout     string `json:"timeout" jsonschema:"each cell's wall-clock limit"`
	CPUTime     string `json:"cpu_time" jsonschema:"each cell's CPU time limit"`
	Memory      string `json:"memory" jsonschema:"the whole session's memory limit"`
	Disk        string `json:"disk" jsonschema:"the size of the working directory"`
	IdleTimeout string `json:"idle_timeout" jsonschema:"it closes after this long without a call"`
	CPUBudget   string `json:"cpu_budget" jsonschema:"the CPU time the whole session may use; past it the session dies"`
	CPUUsed     string `json:"cpu_used" jsonschema:"the CPU time it has used so far"`
	ExpiresAt   string `json:"expires_at" jsonschema:"when it closes unless used again (RFC 3339)"`
	WorkDir     string `json:"work_dir" jsonschema:"the working directory of its code, where uploads go"`
}

func sessionOutput(i run.SessionInfo) SessionOutput {
	return SessionOutput{
		SessionID: i.ID, Language: i.Runtime, Version: i.Version, State: string(i.State), Reason: i.Reason, Cells: i.Cells,
		Timeout: i.Limits.Timeout.String(), CPUTime: i.Limits.CPUTime.String(), Memory: i.Limits.Memory.String(), Disk: i.Limits.Tmpfs.String(),
		IdleTimeout: i.IdleTimeout.String(), CPUBudget: i.CPUBudget.String(), CPUUsed: i.CPUUsed.String(), ExpiresAt: i.ExpiresAt.UTC().Format(time.RFC3339), WorkDir: workspace.Dir,
	}
}

func (t *sessionTools) create(ctx context.Context, req *mcp.CallToolRequest, in CreateSessionInput) (*mcp.CallToolResult, SessionOutput, error) {
	spec := &run.SessionSpec{Runtime: in.Language}
	if in.Timeout != "" {
		d, err := limits.ParseDuration(string(in.Timeout))
		if err != nil {
			return nil, SessionOutput{}, fmt.Errorf("timeout: %w", err)
		}
		// One number for a model: a cell may use its whole wall-clock
		// time on a CPU.
		spec.Limits.Timeout, spec.Limits.CPUTime = d, d
	}
	if in.Memory != "" {
		b, err := limits.ParseBytes(string(in.Memory))
		if err != nil {
			return nil, SessionOutput{}, fmt.Errorf("memory: %w", err)
		}
		spec.Limits.Memory = b
	}
	for _, f := range []struct {
		name string
		in   limitArg
		to   *limits.Duration
	}{{"idle_timeout", in.IdleTimeout, &spec.IdleTimeout}, {"cpu_budget", in.CPUBudget, &spec.CPUBudget}} {
		if f.in == "" {
			continue
		}
		d, err := limits.ParseDuration(string(f.in))
		if err != nil {
			return nil, SessionOutput{}, fmt.Errorf("%s: %w", f.name, err)
		}
		*f.to = d
	}
	for _, f := range in.Files {
		if len(f.Content) > MaxCodeBytes {
			return nil, SessionOutput{}, fmt.Errorf("file %q is %d bytes; the limit is %d (upload_file takes up to %d)", f.Name, len(f.Content), MaxCodeBytes, MaxFileBytes)
		}
		spec.Files = append(spec.Files, run.File{Name: f.Name, Content: []byte(f.Content)})
	}
	s, err := t.m.Create(ctx, owner(req), spec)
	if err != nil {
		return nil, SessionOutput{}, hint(err)
	}
	out := sessionOutput(s.Info())
	msg := fmt.Sprintf("Session %s started: %s %s, working directory %s. "+
		"Variables, imports and files persist between run_in_session calls. Each cell may run %s; the session has %s of memory "+
		"and closes after %s without a call (close_session when done).",
		out.SessionID, out.Language, out.Version, out.WorkDir, out.Timeout, out.Memory, out.IdleTimeout)
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: msg}}}, out, nil
}

// RunInSessionInput is run_in_session's arguments.
type RunInSessionInput struct {
	SessionID string   `json:"session_id" jsonschema:"the id create_session returned"`
	Code      string   `json:"code" jsonschema:"code in the session's language to run; the value of a trailing expression is returned"`
	Timeout   limitArg `json:"timeout,omitempty" jsonschema:"this cell's wall-clock limit such as 5s, or a number of seconds; at most the session's timeout, which is the default"`
}

// CellOutput is run_in_session's structured result. Images are not in it:
// each is an image item of the result's content.
type CellOutput struct {
	SessionID string `json:"session_id"`
	Cell      int    `json:"cell" jsonschema:"the cell's number in the session, from 1"`
	Status    string `json:"status" jsonschema:"ok; error (an exception, see error); timeout, cpu_limit, output_limit or memory_limit (a limit stopped the cell); exited, signaled or internal_error (the kernel ended); canceled (the call was cancelled; the session goes on)"`
	Reason    string `json:"reason,omitempty" jsonschema:"why a limit or the sandbox stopped the cell, and whether the session goes on"`
	Stdout    string `json:"stdout"`
	Stderr    string `json:"stderr"`
	// The streams' truncation: past the output limit, the cell is stopped.
	StdoutTruncated bool                `json:"stdout_truncated,omitempty"`
	StderrTruncated bool                `json:"stderr_truncated,omitempty"`
	Result          map[string]string   `json:"result,omitempty" jsonschema:"the value of the cell's trailing expression by MIME type (text/plain, maybe text/html); an image representation is an image item of the content instead"`
	Error           *CellErrorOutput    `json:"error,omitempty" jsonschema:"the exception the cell raised"`
	Display         []map[string]string `json:"display,omitempty" jsonschema:"what the cell displayed, in order, by MIME type; image representations are image items of the content instead"`
	Images          int                 `json:"images,omitempty" jsonschema:"how many images (figures) the cell produced; each is an image item of the content"`
	WallTimeMS      float64             `json:"wall_time_ms"`
	CPUTimeMS       float64             `json:"cpu_time_ms"`
	State           string              `json:"state" jsonschema:"the session after the cell: idle (ready for the next) or dead (its variables are lost)"`
}

// CellErrorOutput is an exception a cell raised.
type CellErrorOutput struct {
	Name      string `json:"name" jsonschema:"the exception's type, e.g. ZeroDivisionError"`
	Value     string `json:"value" jsonschema:"its message"`
	Traceback string `json:"traceback"`
}

func (t *sessionTools) run(ctx context.Context, req *mcp.CallToolRequest, in RunInSessionInput) (*mcp.CallToolResult, CellOutput, error) {
	if len(in.Code) > MaxCodeBytes {
		return nil, CellOutput{}, fmt.Errorf("code is %d bytes; the limit is %d (upload_file a larger program and run it from a cell)", len(in.Code), MaxCodeBytes)
	}
	s, err := t.get(req, in.SessionID)
	if err != nil {
		return nil, CellOutput{}, err
	}
	var ereq run.CellRequest
	ereq.Code = in.Code
	if in.Timeout != "" {
		d, err := limits.ParseDuration(string(in.Timeout))
		if err != nil {
			return nil, CellOutput{}, fmt.Errorf("timeout: %w", err)
		}
		// The session's timeout passed the ceiling when it was made;
		// a cell's may not go past it (nor past its CPU budget).
		limit := s.Info().Limits.Timeout
		if d <= 0 || d > limit {
			return nil, CellOutput{}, fmt.Errorf("timeout %s: must be above 0 and at most this session's cell timeout of %s (create_session sets it)", d, limit)
		}
		ereq.Timeout = d
	}
	res, err := s.Exec(ctx, ereq, run.CellStream{})
	if err != nil {
		return nil, CellOutput{}, hint(err)
	}
	content, out := cellResult(res)
	return &mcp.CallToolResult{Content: content, IsError: res.Status != run.StatusOK}, out, nil
}

// cellResult is what a model reads of a cell: one text (the status, with
// the reason when not ok; the streams, the value, the traceback), then its
// images; and the structured result without the images' base64.
func cellResult(res *run.CellResult) ([]mcp.Content, CellOutput) {
	out := CellOutput{
		SessionID: res.Session, Cell: res.Cell, Status: string(res.Status), Reason: res.Reason,
		Stdout:          strings.ToValidUTF8(string(res.Stdout), "\uFFFD"),
		Stderr:          strings.ToValidUTF8(string(res.Stderr), "\uFFFD"),
		StdoutTruncated: res.StdoutTruncated, StderrTruncated: res.StderrTruncated,
		WallTimeMS: float64(res.WallTime.Microseconds()) / 1000, CPUTimeMS: float64(res.CPUTime.Microseconds()) / 1000,
		State: string(res.State),
	}
	if res.Error != nil {
		out.Error = &CellErrorOutput{Name: res.Error.Name, Value: res.Error.Value, Traceback: res.Error.Traceback}
	}
	var imgs images
	out.Result = imgs.take(res.Result)
	var displayed []string
	for _, d := range res.Display {
		rest := imgs.take(d)
		out.Display = append(out.Display, rest)
		if _, image := isImageBundle(d); !image && rest["text/plain"] != "" {
			displayed = append(displayed, rest["text/plain"])
		}
	}
	out.Images = len(imgs.content)

	var b strings.Builder
	switch res.Status {
	case run.StatusOK:
		fmt.Fprintf(&b, "ok (cell %d)", res.Cell)
	case run.StatusError:
		fmt.Fprintf(&b, "error (cell %d)", res.Cell)
		if res.Error != nil {
			fmt.Fprintf(&b, ": %s: %s", res.Error.Name, res.Error.Value)
		}
	default:
		fmt.Fprintf(&b, "%s (cell %d): %s", res.Status, res.Cell, res.Reason)
	}
	if res.State == run.SessionDead {
		b.WriteString("\nThe session is dead: its variables are lost, but download_file can still read its files. close_session it and create_session a new one to go on.")
	}
	section := func(name, text string) {
		if text == "" {
			return
		}
		fmt.Fprintf(&b, "\n--- %s ---\n%s", name, text)
	}
	section("stdout", out.Stdout)
	if res.StdoutTruncated {
		fmt.Fprintf(&b, "\n[stdout truncated at %d bytes]", len(res.Stdout))
	}
	section("stderr", out.Stderr)
	if res.StderrTruncated {
		fmt.Fprintf(&b, "\n[stderr truncated at %d bytes]", len(res.Stderr))
	}
	for _, d := range displayed {
		section("display", d)
	}
	section("value", out.Result["text/plain"])
	if res.Error != nil {
		section("traceback", res.Error.Traceback)
	}
	switch n := len(imgs.content); {
	case n == 1:
		b.WriteString("\n[1 image follows]")
	case n > 1:
		fmt.Fprintf(&b, "\n[%d images follow]", n)
	}
	for _, note := range imgs.notes {
		fmt.Fprintf(&b, "\n[%s]", note)
	}
	return append([]mcp.Content{&mcp.TextContent{Text: b.String()}}, imgs.content...), out
}

// imageMIMEs are the image representations a bundle may carry that a
// model's host can show.
var imageMIMEs = []string{"image/png", "image/jpeg", "image/gif", "image/webp"}

func isImageBundle(b run.MIMEBundle) (string, bool) {
	for _, m := range imageMIMEs {
		if _, ok := b[m]; ok {
			return m, true
		}
	}
	return "", false
}

// images collects the image content of one cell's bundles, within the
// caps.
type images struct {
	content []mcp.Content
	bytes   int
	notes   []string
}

// take returns b without its image representations, adding the first one
// that is valid to the content. The bytes are checked against the type
// the bundle claims: displays come from inside the sandbox.
func (im *images) take(b run.MIMEBundle) map[string]string {
	if b == nil {
		return nil
	}
	rest := make(map[string]string, len(b))
	for k, v := range b {
		rest[k] = v
	}
	mime, ok := isImageBundle(b)
	if !ok {
		return rest
	}
	for _, m := range imageMIMEs {
		delete(rest, m)
	}
	data, err := base64.StdEncoding.DecodeString(b[mime])
	switch {
	case err != nil:
		im.notes = append(im.notes, fmt.Sprintf("an %s display was left out: it is not valid base64", mime))
	case sniffImage(data) != mime:
		im.notes = append(im.notes, fmt.Sprintf("an %s display was left out: its bytes are not %s", mime, mime))
	case len(im.content) >= maxImages || im.bytes+len(data) > maxImageBytes:
		im.notes = append(im.notes, fmt.Sprintf("an image of %d bytes was left out: a cell returns at most %d images, %d MiB in all; save figures to files and download_file them", len(data), maxImages, maxImageBytes>>20))
	default:
		// The SDK base64-encodes Data on the wire.
		im.content = append(im.content, &mcp.ImageContent{Data: data, MIMEType: mime})
		im.bytes += len(data)
	}
	return rest
}

// sniffImage is the MIME type of an image format a model's host shows,
// by its signature, or "".
func sniffImage(b []byte) string {
	switch t := http.DetectContentType(b); t {
	case "image/png", "image/jpeg", "image/gif", "image/webp":
		return t
	}
	return ""
}

// CloseSessionInput is close_session's arguments.
type CloseSessionInput struct {
	SessionID string `json:"session_id" jsonschema:"the id create_session returned"`
}

// CloseSessionOutput says which session was closed.
type CloseSessionOutput struct {
	SessionID string `json:"session_id"`
	Cells     int    `json:"cells" jsonschema:"how many cells it ran"`
}

func (t *sessionTools) close(ctx context.Context, req *mcp.CallToolRequest, in CloseSessionInput) (*mcp.CallToolResult, CloseSessionOutput, error) {
	s, err := t.get(req, in.SessionID)
	if err != nil {
		return nil, CloseSessionOutput{}, err
	}
	cells := s.Info().Cells
	if err := t.m.Delete(owner(req), s.ID()); errors.Is(err, session.ErrNotFound) {
		return nil, CloseSessionOutput{}, hint(err) // closed by another call meanwhile
	} else if err != nil {
		return nil, CloseSessionOutput{}, fmt.Errorf("close session %s: %w", s.ID(), err)
	}
	msg := fmt.Sprintf("Session %s closed after %d cells; its variables and files are gone.", s.ID(), cells)
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: msg}}}, CloseSessionOutput{SessionID: s.ID(), Cells: cells}, nil
}

// ListSessionsInput takes no arguments.
type ListSessionsInput struct{}

// ListSessionsOutput lists the caller's sessions.
type ListSessionsOutput struct {
	Sessions []SessionOutput `json:"sessions"`
}

func (t *sessionTools) list(ctx context.Context, req *mcp.CallToolRequest, _ ListSessionsInput) (*mcp.CallToolResult, ListSessionsOutput, error) {
	out := ListSessionsOutput{Sessions: []SessionOutput{}}
	var lines []string
	for _, i := range t.m.List(owner(req)) {
		o := sessionOutput(i)
		out.Sessions = append(out.Sessions, o)
		line := fmt.Sprintf("%s: %s %s, %s, %d cells, expires %s", o.SessionID, o.Language, o.Version, o.State, o.Cells, o.ExpiresAt)
		if o.Reason != "" {
			line += " (" + o.Reason + ")"
		}
		lines = append(lines, line)
	}
	text := "no sessions"
	if len(lines) > 0 {
		text = strings.Join(lines, "\n")
	}
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text}}}, out, nil
}
