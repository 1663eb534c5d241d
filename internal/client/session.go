package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/wire"
	"github.com/sandboxd/sandboxd/internal/workspace"
)

// The session API (/v1/sessions): a session is a live interpreter in a
// sandbox that keeps its variables and files from cell to cell.

// Live receives a cell's output and displays as they arrive. Every field
// may be nil. The calls come from the goroutine that called Exec, one at a
// time and in the order the daemon sent them.
type Live struct {
	Stdout, Stderr io.Writer
	Display        func(run.MIMEBundle)
}

// CreateSession starts a session (POST /v1/sessions).
func (c *Client) CreateSession(ctx context.Context, spec *run.SessionSpec) (*run.SessionInfo, error) {
	var info run.SessionInfo
	if err := c.doJSON(ctx, http.MethodPost, "/v1/sessions", spec, &info); err != nil {
		return nil, err
	}
	return &info, nil
}

// ListSessions returns the caller's sessions (GET /v1/sessions).
func (c *Client) ListSessions(ctx context.Context) ([]run.SessionInfo, error) {
	var list wire.SessionList
	if err := c.doJSON(ctx, http.MethodGet, "/v1/sessions", nil, &list); err != nil {
		return nil, err
	}
	return list.Sessions, nil
}

// GetSession describes session id (GET /v1/sessions/{id}).
func (c *Client) GetSession(ctx context.Context, id string) (*run.SessionInfo, error) {
	p, err := sessionPath(id, "")
	if err != nil {
		return nil, err
	}
	var info run.SessionInfo
	if err := c.doJSON(ctx, http.MethodGet, p, nil, &info); err != nil {
		return nil, err
	}
	return &info, nil
}

// DeleteSession ends session id and removes its files
// (DELETE /v1/sessions/{id}).
func (c *Client) DeleteSession(ctx context.Context, id string) error {
	p, err := sessionPath(id, "")
	if err != nil {
		return err
	}
	return c.doJSON(ctx, http.MethodDelete, p, nil, nil)
}

// Interrupt interrupts session id's running cell, as Ctrl-C in a notebook
// does (the cell's own request then answers with a KeyboardInterrupt),
// and reports whether a cell was running.
func (c *Client) Interrupt(ctx context.Context, id string) (bool, error) {
	p, err := sessionPath(id, "/interrupt")
	if err != nil {
		return false, err
	}
	var out wire.InterruptResult
	err = c.doJSON(ctx, http.MethodPost, p, nil, &out)
	return out.Interrupted, err
}

// Exec runs one cell in session id as a streamed request: output chunks go
// to live's writers and displays to live.Display as the daemon sends them,
// and the cell's result is returned at the end. An exception in the cell,
// or a limit it hit, is in the result (Status), not an error; the error is
// an *Error for the daemon's refusals (404 unknown session, 409 dead
// session, ...), or the transport's. Ending ctx ends the request, which
// makes the daemon interrupt the cell.
func (c *Client) Exec(ctx context.Context, id string, req run.CellRequest, live Live) (*run.CellResult, error) {
	p, err := sessionPath(id, "/exec")
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(&req)
	if err != nil {
		return nil, err
	}
	resp, err := c.postStream(ctx, p, body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != wire.NDJSON {
		// A daemon that does not stream answers the whole result at
		// once: hand it on the same way.
		var res run.CellResult
		if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
			return nil, fmt.Errorf("bad cell result from sandboxd: %w", err)
		}
		if err := replay(&res, live); err != nil {
			return nil, err
		}
		return &res, nil
	}
	return readCellEvents(ctx, resp.Body, live)
}

// replay gives live what a non-streamed result holds.
func replay(res *run.CellResult, live Live) error {
	for _, o := range []struct {
		w io.Writer
		b []byte
	}{{live.Stdout, res.Stdout}, {live.Stderr, res.Stderr}} {
		if o.w != nil && len(o.b) > 0 {
			if _, err := o.w.Write(o.b); err != nil {
				return err
			}
		}
	}
	if live.Display != nil {
		for _, d := range res.Display {
			live.Display(d)
		}
	}
	return nil
}

// readCellEvents consumes a cell's NDJSON stream until its result.
func readCellEvents(ctx context.Context, r io.Reader, live Live) (*run.CellResult, error) {
	dec := json.NewDecoder(r)
	for {
		var ev wire.CellEvent
		if err := dec.Decode(&ev); err != nil {
			switch {
			case ctx.Err() != nil:
				// The request ended here, not in the stream.
				return nil, fmt.Errorf("cell request: %w", context.Cause(ctx))
			case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
				return nil, errors.New("sandboxd closed the stream before the cell's result")
			}
			return nil, fmt.Errorf("bad cell event from sandboxd: %w", err)
		}
		switch ev.Type {
		case "stdout", "stderr":
			if err := writeChunk(ev.Type, ev.Data, ev.Encoding, live.Stdout, live.Stderr); err != nil {
				return nil, err
			}
		case "display":
			if live.Display != nil && ev.Display != nil {
				live.Display(ev.Display)
			}
		case "result":
			if ev.Result == nil {
				return nil, errors.New("sandboxd sent an empty cell result")
			}
			return ev.Result, nil
		case "error":
			if ev.Error == nil {
				return nil, errors.New("sandboxd sent an empty error")
			}
			return nil, &Error{Status: http.StatusOK, Code: ev.Error.Code, Message: ev.Error.Message}
		}
		// Other types are newer than this client: skipped.
	}
}

// PutFile writes r's bytes to path in session id's workspace, creating
// its directories (PUT /v1/sessions/{id}/files/{path}). The body streams:
// r is not held in memory.
func (c *Client) PutFile(ctx context.Context, id, path string, r io.Reader) (*workspace.FileInfo, error) {
	p, err := sessionFilePath(id, path)
	if err != nil {
		return nil, err
	}
	hr, err := c.newRequest(ctx, http.MethodPut, p, r)
	if err != nil {
		return nil, err
	}
	hr.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.send(hr)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var fi workspace.FileInfo
	if err := json.NewDecoder(resp.Body).Decode(&fi); err != nil {
		return nil, fmt.Errorf("bad file info from sandboxd: %w", err)
	}
	return &fi, nil
}

// GetFile copies the file at path in session id's workspace to w and
// returns how many bytes it copied (GET /v1/sessions/{id}/files/{path}).
func (c *Client) GetFile(ctx context.Context, id, path string, w io.Writer) (int64, error) {
	p, err := sessionFilePath(id, path)
	if err != nil {
		return 0, err
	}
	hr, err := c.newRequest(ctx, http.MethodGet, p, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.send(hr)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(w, resp.Body)
	if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
		err = fmt.Errorf("sandboxd sent %d of the file's %d bytes", n, resp.ContentLength)
	}
	return n, err
}

// DeleteFile removes path from session id's workspace
// (DELETE /v1/sessions/{id}/files/{path}).
func (c *Client) DeleteFile(ctx context.Context, id, path string) error {
	p, err := sessionFilePath(id, path)
	if err != nil {
		return err
	}
	return c.doJSON(ctx, http.MethodDelete, p, nil, nil)
}

// ListFiles lists directory dir of session id's workspace, "" for its top
// (GET /v1/sessions/{id}/files?dir=DIR).
func (c *Client) ListFiles(ctx context.Context, id, dir string) (*wire.FileList, error) {
	p, err := sessionPath(id, "/files")
	if err != nil {
		return nil, err
	}
	if dir != "" {
		if strings.HasPrefix(dir, "/") {
			return nil, fmt.Errorf("directory %q: want a path relative to the session's workspace", dir)
		}
		p += "?" + url.Values{"dir": {dir}}.Encode()
	}
	var list wire.FileList
	if err := c.doJSON(ctx, http.MethodGet, p, nil, &list); err != nil {
		return nil, err
	}
	return &list, nil
}

// sessionPath is the escaped path of session id's resource sub.
func sessionPath(id, sub string) (string, error) {
	if id == "" || strings.ContainsAny(id, "/?#") {
		return "", fmt.Errorf("bad session id %q", id)
	}
	return "/v1/sessions/" + url.PathEscape(id) + sub, nil
}

// sessionFilePath is the escaped path of a file of session id. Paths are
// relative to the workspace: an absolute one, or one that climbs out with
// "..", is refused here rather than cleaned into another path on the way
// (net/http's ServeMux redirects unclean paths).
func sessionFilePath(id, name string) (string, error) {
	clean := path.Clean(name)
	switch {
	case name == "" || clean == ".":
		return "", fmt.Errorf("file path %q: names no file", name)
	case strings.HasPrefix(name, "/"):
		return "", fmt.Errorf("file path %q: want a path relative to the session's workspace", name)
	case clean == ".." || strings.HasPrefix(clean, "../"):
		return "", fmt.Errorf("file path %q: leaves the session's workspace", name)
	}
	p, err := sessionPath(id, "/files")
	if err != nil {
		return "", err
	}
	segs := strings.Split(clean, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return p + "/" + strings.Join(segs, "/"), nil
}
