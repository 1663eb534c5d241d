// Package client talks to a sandboxd daemon over its HTTP API: it sends
// runs and streams their output back, so `sandboxctl run --server URL`
// behaves as a local run does, and it drives sessions (session.go).
package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/wire"
)

// Client talks to one daemon.
type Client struct {
	// Base is the daemon's URL ("http://127.0.0.1:8080").
	Base string
	// Token is sent as a bearer token when set.
	Token string
	HTTP  *http.Client
}

// Error is an error answer of the daemon.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("sandboxd answered %d %s: %s", e.Status, e.Code, e.Message)
}

// Run sends spec as a streamed run: output chunks go to stream's writers as
// they arrive, and the result is returned at the end. stream.Stdin, if set,
// is read whole first (the API takes stdin up front).
func (c *Client) Run(ctx context.Context, spec *run.Spec, stream run.Stream) (*run.Result, error) {
	req := wire.RunRequest{Spec: *spec}
	if stream.Stdin != nil {
		b, err := io.ReadAll(stream.Stdin)
		if err != nil {
			return nil, fmt.Errorf("read stdin: %w", err)
		}
		req.Stdin = b
	}
	// Bytes that are not UTF-8 go as base64: a JSON string would turn
	// them into U+FFFD.
	text, enc := run.EncodeBytes(req.Stdin)
	req.Stdin, req.StdinEncoding = run.Text(text), enc
	body, err := json.Marshal(&req)
	if err != nil {
		return nil, err
	}
	resp, err := c.postStream(ctx, "/v1/runs", body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return readEvents(resp.Body, stream)
}

// postStream posts a JSON body to path asking for an NDJSON stream, and
// returns the answer once it is a success (send turns the rest into an
// *Error).
func (c *Client) postStream(ctx context.Context, path string, body []byte) (*http.Response, error) {
	hr, err := c.newRequest(ctx, http.MethodPost, path+"?stream=1", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Accept", wire.NDJSON)
	return c.send(hr)
}

// newRequest is a request for path (with its query) on the daemon.
func (c *Client) newRequest(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	hr, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.Base, "/")+path, body)
	if err != nil {
		return nil, err
	}
	if c.Token != "" {
		hr.Header.Set("Authorization", "Bearer "+c.Token)
	}
	return hr, nil
}

// send sends hr; an answer other than 2xx is returned as an *Error, its
// body consumed and closed.
func (c *Client) send(hr *http.Request) (*http.Response, error) {
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(hr)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	return resp, nil
}

// doJSON sends in (if not nil) as JSON and decodes the answer into out
// (if not nil; the answer is discarded otherwise).
func (c *Client) doJSON(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	hr, err := c.newRequest(ctx, method, path, body)
	if err != nil {
		return err
	}
	if in != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	if out != nil {
		hr.Header.Set("Accept", "application/json")
	}
	resp, err := c.send(hr)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("bad answer from sandboxd to %s %s: %w", method, hr.URL.Path, err)
	}
	return nil
}

func decodeError(resp *http.Response) error {
	var eb wire.ErrorBody
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if json.Unmarshal(b, &eb) != nil || eb.Error.Message == "" {
		return &Error{Status: resp.StatusCode, Code: http.StatusText(resp.StatusCode), Message: strings.TrimSpace(string(b))}
	}
	return &Error{Status: resp.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message}
}

// readEvents consumes the NDJSON stream until the result.
func readEvents(r io.Reader, stream run.Stream) (*run.Result, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 256<<20)
	for sc.Scan() {
		var ev wire.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return nil, fmt.Errorf("bad event from sandboxd: %w", err)
		}
		switch ev.Type {
		case "stdout", "stderr":
			if err := writeChunk(ev.Type, ev.Data, ev.Encoding, stream.Stdout, stream.Stderr); err != nil {
				return nil, err
			}
		case "result":
			if ev.Result == nil {
				return nil, errors.New("sandboxd sent an empty result")
			}
			return ev.Result, nil
		case "error":
			if ev.Error == nil {
				return nil, errors.New("sandboxd sent an empty error")
			}
			return nil, &Error{Status: http.StatusOK, Code: ev.Error.Code, Message: ev.Error.Message}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return nil, errors.New("sandboxd closed the stream before the result")
}

// writeChunk writes a streamed stdout or stderr event's bytes to its
// writer (nil: dropped).
func writeChunk(typ, data, encoding string, stdout, stderr io.Writer) error {
	w := stdout
	if typ == "stderr" {
		w = stderr
	}
	if w == nil {
		return nil
	}
	b, err := run.DecodeBytes(data, encoding)
	if err != nil {
		return fmt.Errorf("bad %s event: %w", typ, err)
	}
	_, err = w.Write(b)
	return err
}
