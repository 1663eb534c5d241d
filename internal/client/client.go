// Package client sends runs to a sandboxd daemon over its HTTP API and
// streams their output back, so `sandboxctl run --server URL` behaves as a
// local run does.
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

	"github.com/sandboxd/sandboxd/internal/executor"
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
func (c *Client) Run(ctx context.Context, spec *run.Spec, stream executor.Stream) (*run.Result, error) {
	req := wire.RunRequest{
		Runtime: spec.Runtime, Files: spec.Files, Entrypoint: spec.Entry, Args: spec.Args,
		Env: spec.Env, Limits: spec.Limits, CompileLimits: spec.CompileLimits, Backend: spec.Backend,
		Stdin: string(spec.Stdin),
	}
	if stream.Stdin != nil {
		b, err := io.ReadAll(stream.Stdin)
		if err != nil {
			return nil, fmt.Errorf("read stdin: %w", err)
		}
		req.Stdin = string(b)
	}
	body, err := json.Marshal(&req)
	if err != nil {
		return nil, err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(c.Base, "/")+"/v1/runs?stream=1", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Accept", "application/x-ndjson")
	if c.Token != "" {
		hr.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(hr)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, decodeError(resp)
	}
	return readEvents(resp.Body, stream)
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
func readEvents(r io.Reader, stream executor.Stream) (*run.Result, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 256<<20)
	for sc.Scan() {
		var ev wire.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return nil, fmt.Errorf("bad event from sandboxd: %w", err)
		}
		switch ev.Type {
		case "stdout", "stderr":
			w := stream.Stdout
			if ev.Type == "stderr" {
				w = stream.Stderr
			}
			if w == nil {
				continue
			}
			b, err := run.DecodeBytes(ev.Data, ev.Encoding)
			if err != nil {
				return nil, fmt.Errorf("bad %s event: %w", ev.Type, err)
			}
			if _, err := w.Write(b); err != nil {
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
