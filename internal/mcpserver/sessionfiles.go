package mcpserver

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/workspace"
)

// The file tools work on a session's workspace through isolate's
// file operations, which resolve every path beneath the workspace and
// never follow a symlink the session's code may have planted.

// checkPath refuses what a model may mean but the workspace cannot take,
// with a message that says what to give instead; CleanName then refuses
// the rest ('..', empty components). Its errors are ready for the model.
func checkPath(p string) error {
	if p == "" {
		return fmt.Errorf("path is required: a path relative to the session's working directory %s, such as data/input.csv", workspace.Dir)
	}
	if strings.HasPrefix(p, "/") {
		rel := strings.TrimPrefix(strings.TrimPrefix(p, workspace.Dir), "/")
		if strings.HasPrefix(p, workspace.Dir+"/") && rel != "" {
			return fmt.Errorf("%w: %q is absolute: give it relative to the session's working directory %s, as %q", workspace.ErrBadFileName, p, workspace.Dir, rel)
		}
		return fmt.Errorf("%w: %q is absolute: only files in the session's working directory %s can be read or written, by relative paths such as data/input.csv", workspace.ErrBadFileName, p, workspace.Dir)
	}
	_, err := workspace.CleanName(p)
	return hint(err)
}

// UploadFileInput is upload_file's arguments.
type UploadFileInput struct {
	SessionID string `json:"session_id" jsonschema:"the id create_session returned"`
	Path      string `json:"path" jsonschema:"where to write, relative to the session's working directory, such as data/input.csv"`
	Content   string `json:"content" jsonschema:"the file's content: text, or base64 when encoding is base64"`
	Encoding  string `json:"encoding,omitempty" jsonschema:"utf8 (the default: content is the text) or base64 (content is binary data in base64)"`
}

// UploadFileOutput says what was written.
type UploadFileOutput struct {
	Path string `json:"path"`
	Size int64  `json:"size" jsonschema:"bytes written"`
}

func (t *sessionTools) upload(ctx context.Context, req *mcp.CallToolRequest, in UploadFileInput) (*mcp.CallToolResult, UploadFileOutput, error) {
	if err := checkPath(in.Path); err != nil {
		return nil, UploadFileOutput{}, err
	}
	// base64 is 4/3 of its bytes; anything much longer is too large
	// whatever its encoding, and is not decoded.
	if len(in.Content) > MaxFileBytes/3*4+(4<<10) {
		return nil, UploadFileOutput{}, fmt.Errorf("content is %d characters: a file is at most %d bytes (8MiB)", len(in.Content), MaxFileBytes)
	}
	data, err := run.DecodeBytes(in.Content, in.Encoding)
	if err != nil {
		return nil, UploadFileOutput{}, fmt.Errorf("content: %w", err)
	}
	if len(data) > MaxFileBytes {
		return nil, UploadFileOutput{}, fmt.Errorf("the file is %d bytes: upload_file writes at most %d bytes (8MiB)", len(data), MaxFileBytes)
	}
	s, err := t.get(req, in.SessionID)
	if err != nil {
		return nil, UploadFileOutput{}, err
	}
	s.Touch()
	n, err := s.PutFile(in.Path, bytes.NewReader(data), 0, MaxFileBytes)
	if err != nil {
		return nil, UploadFileOutput{}, hint(err)
	}
	msg := fmt.Sprintf("Wrote %d bytes to %s (%s/%s in the session).", n, in.Path, workspace.Dir, in.Path)
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: msg}}}, UploadFileOutput{Path: in.Path, Size: n}, nil
}

// DownloadFileInput is download_file's arguments.
type DownloadFileInput struct {
	SessionID string `json:"session_id" jsonschema:"the id create_session returned"`
	Path      string `json:"path" jsonschema:"the file, relative to the session's working directory, such as out/result.csv"`
}

// DownloadFileOutput describes the file; its content is the result's
// content (text, image or embedded resource).
type DownloadFileOutput struct {
	Path     string `json:"path"`
	Size     int64  `json:"size" jsonschema:"in bytes"`
	MIMEType string `json:"mime_type"`
	Kind     string `json:"kind" jsonschema:"text (a text content item), image (an image item) or binary (an embedded resource with a base64 blob)"`
}

func (t *sessionTools) download(ctx context.Context, req *mcp.CallToolRequest, in DownloadFileInput) (*mcp.CallToolResult, DownloadFileOutput, error) {
	if err := checkPath(in.Path); err != nil {
		return nil, DownloadFileOutput{}, err
	}
	s, err := t.get(req, in.SessionID)
	if err != nil {
		return nil, DownloadFileOutput{}, err
	}
	s.Touch()
	f, info, err := s.OpenFile(in.Path)
	if err != nil {
		return nil, DownloadFileOutput{}, hint(err)
	}
	defer f.Close()
	tooLarge := func(size int64) error {
		return fmt.Errorf("%q is %d bytes: download_file returns at most %d bytes (8MiB); read it in parts from a cell, or write a smaller summary to a file", in.Path, size, MaxFileBytes)
	}
	if info.Size > MaxFileBytes {
		return nil, DownloadFileOutput{}, tooLarge(info.Size)
	}
	// The session's code may be writing it still: read within the cap.
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, DownloadFileOutput{}, fmt.Errorf("read %q: %w", in.Path, err)
	}
	if len(data) > MaxFileBytes {
		return nil, DownloadFileOutput{}, tooLarge(int64(len(data)))
	}
	out := DownloadFileOutput{Path: in.Path, Size: int64(len(data))}
	var content []mcp.Content
	switch {
	case sniffImage(data) != "":
		out.Kind, out.MIMEType = "image", sniffImage(data)
		content = []mcp.Content{
			&mcp.TextContent{Text: fmt.Sprintf("%s: %s, %d bytes (the image follows)", in.Path, out.MIMEType, out.Size)},
			&mcp.ImageContent{Data: data, MIMEType: out.MIMEType},
		}
	case utf8.Valid(data) && bytes.IndexByte(data, 0) < 0:
		out.Kind, out.MIMEType = "text", textMIME(in.Path)
		content = []mcp.Content{&mcp.TextContent{Text: string(data)}}
	default:
		out.Kind, out.MIMEType = "binary", binaryMIME(in.Path, data)
		uri := (&url.URL{Scheme: "sandboxd", Host: "session", Path: "/" + s.ID() + "/" + in.Path}).String()
		content = []mcp.Content{
			&mcp.TextContent{Text: fmt.Sprintf("%s: binary (%s), %d bytes, attached as an embedded resource (base64 blob). To look inside, read it from a cell.", in.Path, out.MIMEType, out.Size)},
			&mcp.EmbeddedResource{Resource: &mcp.ResourceContents{URI: uri, MIMEType: out.MIMEType, Blob: data}},
		}
	}
	return &mcp.CallToolResult{Content: content}, out, nil
}

// textMIME is a text file's type by its extension, text/plain by default.
func textMIME(name string) string {
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		if t, _, err := mime.ParseMediaType(mime.TypeByExtension(name[i:])); err == nil && (strings.HasPrefix(t, "text/") || strings.HasSuffix(t, "json") || strings.HasSuffix(t, "xml")) {
			return t
		}
	}
	return "text/plain"
}

// binaryMIME is a binary file's type by its content, then its extension.
func binaryMIME(name string, data []byte) string {
	t, _, _ := mime.ParseMediaType(http.DetectContentType(data))
	if t != "" && t != "application/octet-stream" {
		return t
	}
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		if t, _, err := mime.ParseMediaType(mime.TypeByExtension(name[i:])); err == nil {
			return t
		}
	}
	return "application/octet-stream"
}

// ListSessionFilesInput is list_session_files' arguments.
type ListSessionFilesInput struct {
	SessionID string `json:"session_id" jsonschema:"the id create_session returned"`
	Dir       string `json:"dir,omitempty" jsonschema:"a directory relative to the working directory (default: the whole working directory)"`
}

// ListSessionFilesOutput lists a session's files.
type ListSessionFilesOutput struct {
	Files     []SessionFile `json:"files"`
	Truncated bool          `json:"truncated,omitempty" jsonschema:"entries were left out"`
}

// SessionFile is one entry of a session's working directory.
type SessionFile struct {
	Path string `json:"path" jsonschema:"relative to the working directory"`
	Type string `json:"type" jsonschema:"file, dir, symlink or other"`
	Size int64  `json:"size" jsonschema:"in bytes"`
}

func (t *sessionTools) listFiles(ctx context.Context, req *mcp.CallToolRequest, in ListSessionFilesInput) (*mcp.CallToolResult, ListSessionFilesOutput, error) {
	dir := in.Dir
	if dir == "." || dir == workspace.Dir || dir == workspace.Dir+"/" {
		dir = ""
	}
	if dir != "" {
		if err := checkPath(dir); err != nil {
			return nil, ListSessionFilesOutput{}, err
		}
	}
	s, err := t.get(req, in.SessionID)
	if err != nil {
		return nil, ListSessionFilesOutput{}, err
	}
	s.Touch()
	files, truncated, err := s.ListFiles(dir, maxListEntries)
	if err != nil {
		return nil, ListSessionFilesOutput{}, hint(err)
	}
	out := ListSessionFilesOutput{Files: []SessionFile{}, Truncated: truncated}
	var b strings.Builder
	for _, f := range files {
		out.Files = append(out.Files, SessionFile{Path: f.Name, Type: f.Type, Size: f.Size})
		switch f.Type {
		case "dir":
			fmt.Fprintf(&b, "%s/\n", f.Name)
		case "file":
			fmt.Fprintf(&b, "%s (%d bytes)\n", f.Name, f.Size)
		default:
			fmt.Fprintf(&b, "%s (%s)\n", f.Name, f.Type)
		}
	}
	if len(files) == 0 {
		b.WriteString("no files\n")
	}
	if truncated {
		fmt.Fprintf(&b, "[the listing stops at %d entries or 32 levels: list a directory to see more]\n", maxListEntries)
	}
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: strings.TrimSuffix(b.String(), "\n")}}}, out, nil
}
