package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/client"
	"github.com/sandboxd/sandboxd/internal/client/clienttest"
	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/wire"
)

func newClient(t *testing.T) (*clienttest.Server, *client.Client) {
	t.Helper()
	srv := clienttest.New(t)
	srv.Token = "tok"
	return srv, &client.Client{Base: srv.URL + "/", Token: "tok"}
}

// wantError fails unless err is a *client.Error with status and code.
func wantError(t *testing.T, err error, status int, code string) {
	t.Helper()
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != status || ce.Code != code || ce.Message == "" {
		t.Fatalf("error %#v (%v), want a *client.Error %d %s with a message", err, err, status, code)
	}
}

func TestSessionLifecycle(t *testing.T) {
	srv, c := newClient(t)
	ctx := t.Context()
	spec := &run.SessionSpec{
		Runtime: "python", Limits: limits.Limits{Memory: 512 * limits.MiB}, IdleTimeout: limits.Duration(time.Minute),
		Env: map[string]string{"A": "1"}, Files: []run.File{{Name: "data/in.csv", Content: []byte("a,b\n")}},
	}
	info, err := c.CreateSession(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if info.ID == "" || info.Runtime != "python" || info.State != run.SessionIdle || info.Limits.Memory != 512*limits.MiB {
		t.Errorf("created %+v", info)
	}
	got, ok := srv.Session(info.ID)
	if !ok || got.Spec.Env["A"] != "1" || string(got.Files["data/in.csv"]) != "a,b\n" || got.Spec.IdleTimeout != spec.IdleTimeout {
		t.Errorf("the daemon got %+v", got)
	}
	second, err := c.CreateSession(ctx, &run.SessionSpec{})
	if err != nil {
		t.Fatal(err)
	}
	list, err := c.ListSessions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != info.ID || list[1].ID != second.ID {
		t.Errorf("list %+v", list)
	}
	if g, err := c.GetSession(ctx, info.ID); err != nil || g.ID != info.ID {
		t.Errorf("get: %+v %v", g, err)
	}
	if err := c.DeleteSession(ctx, info.ID); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetSession(ctx, info.ID)
	wantError(t, err, http.StatusNotFound, "not_found")
	wantError(t, c.DeleteSession(ctx, info.ID), http.StatusNotFound, "not_found")
	_, err = c.CreateSession(ctx, &run.SessionSpec{Runtime: "c"})
	wantError(t, err, http.StatusBadRequest, "invalid_argument")
	// The fake takes what the daemon takes: every runtime with a kernel,
	// by alias too.
	js, err := c.CreateSession(ctx, &run.SessionSpec{Runtime: "js"})
	if err != nil || js.Runtime != "javascript" {
		t.Errorf("a javascript session: %+v, %v", js, err)
	}
}

func TestSessionToken(t *testing.T) {
	srv, _ := newClient(t)
	for _, tok := range []string{"", "wrong"} {
		c := &client.Client{Base: srv.URL, Token: tok}
		_, err := c.ListSessions(t.Context())
		wantError(t, err, http.StatusUnauthorized, "unauthorized")
	}
}

// TestExecStreams: output and displays reach the caller while the cell
// still runs, in order, and the result comes last.
func TestExecStreams(t *testing.T) {
	srv, c := newClient(t)
	id := srv.Add(run.SessionSpec{})
	seen := make(chan string, 10)
	srv.Exec = func(_ string, req run.CellRequest, emit func(wire.CellEvent)) (*run.CellResult, *wire.ErrorDetail) {
		if req.Code != "x + 1" || req.Timeout != limits.Duration(2*time.Second) {
			return nil, &wire.ErrorDetail{Code: "invalid_argument", Message: fmt.Sprintf("request %+v", req)}
		}
		emit(wire.CellEvent{Type: "stdout", Data: "out 1\n"})
		// The next event waits for the client to have this one: streamed.
		if s := <-seen; s != "stdout:out 1\n" {
			return nil, &wire.ErrorDetail{Code: "internal", Message: "client saw " + s}
		}
		emit(wire.CellEvent{Type: "stderr", Data: "/w==", Encoding: "base64"})
		emit(wire.CellEvent{Type: "display", Display: run.MIMEBundle{"text/plain": "<Figure>", "image/png": "iVBO"}})
		emit(wire.CellEvent{Type: "unknown-future-type"})
		return &run.CellResult{Status: run.StatusOK, Result: run.MIMEBundle{"text/plain": "2"}}, nil
	}
	var order []string
	var mu sync.Mutex
	rec := func(kind string) io.Writer {
		return writerFunc(func(p []byte) (int, error) {
			mu.Lock()
			defer mu.Unlock()
			order = append(order, kind+":"+string(p))
			seen <- kind + ":" + string(p)
			return len(p), nil
		})
	}
	res, err := c.Exec(t.Context(), id, run.CellRequest{Code: "x + 1", Timeout: limits.Duration(2 * time.Second)}, client.Live{
		Stdout: rec("stdout"), Stderr: rec("stderr"),
		Display: func(b run.MIMEBundle) {
			mu.Lock()
			defer mu.Unlock()
			order = append(order, "display:"+b["text/plain"])
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"stdout:out 1\n", "stderr:\xff", "display:<Figure>"}
	if fmt.Sprint(order) != fmt.Sprint(want) {
		t.Errorf("live calls %q, want %q", order, want)
	}
	if res.Status != run.StatusOK || res.Result["text/plain"] != "2" || res.Cell != 1 || res.Session != id ||
		string(res.Stdout) != "out 1\n" || string(res.Stderr) != "\xff" || len(res.Display) != 1 {
		t.Errorf("result %+v", res)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestExecErrors(t *testing.T) {
	srv, c := newClient(t)
	id := srv.Add(run.SessionSpec{})
	ctx := t.Context()

	// An error after the stream started is an *Error too.
	srv.Exec = func(string, run.CellRequest, func(wire.CellEvent)) (*run.CellResult, *wire.ErrorDetail) {
		return nil, &wire.ErrorDetail{Code: "internal", Message: "the kernel broke"}
	}
	_, err := c.Exec(ctx, id, run.CellRequest{Code: "1"}, client.Live{})
	wantError(t, err, http.StatusInternalServerError, "internal")
	srv.Exec = func(_ string, _ run.CellRequest, emit func(wire.CellEvent)) (*run.CellResult, *wire.ErrorDetail) {
		emit(wire.CellEvent{Type: "stdout", Data: "partial"})
		return nil, &wire.ErrorDetail{Code: "unavailable", Message: "shutting down"}
	}
	var out bytes.Buffer
	_, err = c.Exec(ctx, id, run.CellRequest{Code: "1"}, client.Live{Stdout: &out})
	wantError(t, err, http.StatusOK, "unavailable")
	if out.String() != "partial" {
		t.Errorf("stdout before the error: %q", out.String())
	}

	// A dead session is 409, an unknown one 404.
	srv.Kill(id, "the memory limit was reached")
	_, err = c.Exec(ctx, id, run.CellRequest{Code: "1"}, client.Live{})
	wantError(t, err, http.StatusConflict, "conflict")
	_, err = c.Exec(ctx, "nope", run.CellRequest{Code: "1"}, client.Live{})
	wantError(t, err, http.StatusNotFound, "not_found")
	for _, bad := range []string{"", "a/b", "a?b"} {
		if _, err := c.Exec(ctx, bad, run.CellRequest{Code: "1"}, client.Live{}); err == nil {
			t.Errorf("session id %q: no error", bad)
		}
	}
}

// TestExecBrokenStreams: a stream that ends early or carries garbage is an
// error, never a zero result.
func TestExecBrokenStreams(t *testing.T) {
	for _, tc := range []struct{ name, body, want string }{
		{"no result", `{"type":"stdout","data":"a"}` + "\n", "closed the stream"},
		{"garbage", "{not json\n", "bad cell event"},
		{"empty result", `{"type":"result"}` + "\n", "empty cell result"},
		{"bad encoding", `{"type":"stdout","data":"a","encoding":"rot13"}` + "\n", "bad stdout event"},
		{"bad status", `{"type":"result","result":{"status":"exploded"}}` + "\n", "exploded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", wire.NDJSON)
				io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			c := &client.Client{Base: srv.URL}
			res, err := c.Exec(t.Context(), "s", run.CellRequest{Code: "1"}, client.Live{Stdout: io.Discard})
			if err == nil || !strings.Contains(err.Error(), tc.want) || res != nil {
				t.Errorf("got %+v, %v; want an error with %q", res, err, tc.want)
			}
		})
	}
}

// TestExecNotStreamed: a daemon answering the whole result as JSON still
// feeds the caller's writers and display callback.
func TestExecNotStreamed(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"session_id":"s","cell":3,"status":"error","stdout":"o","stderr":"e","display":[{"text/plain":"d"}],"error":{"name":"ZeroDivisionError","value":"division by zero","traceback":"Traceback"},"wall_time_ms":1.5,"cpu_time_ms":1,"state":"idle"}`)
	}))
	defer srv.Close()
	var out, errOut bytes.Buffer
	var displays []string
	res, err := (&client.Client{Base: srv.URL}).Exec(t.Context(), "s", run.CellRequest{Code: "1/0"}, client.Live{
		Stdout: &out, Stderr: &errOut, Display: func(b run.MIMEBundle) { displays = append(displays, b["text/plain"]) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != "o" || errOut.String() != "e" || fmt.Sprint(displays) != "[d]" || res.Status != run.StatusError || res.Error.Name != "ZeroDivisionError" || res.Cell != 3 || res.WallTime != 1500*time.Microsecond {
		t.Errorf("stdout %q stderr %q displays %q result %+v", out.String(), errOut.String(), displays, res)
	}
}

// TestExecCancel: ending the context ends a cell's request at once, even
// while the daemon sends nothing.
func TestExecCancel(t *testing.T) {
	srv, c := newClient(t)
	id := srv.Add(run.SessionSpec{})
	release := make(chan struct{})
	defer close(release)
	srv.Exec = func(_ string, _ run.CellRequest, emit func(wire.CellEvent)) (*run.CellResult, *wire.ErrorDetail) {
		emit(wire.CellEvent{Type: "stdout", Data: "started\n"})
		<-release
		return &run.CellResult{Status: run.StatusOK}, nil
	}
	ctx, cancel := context.WithCancel(t.Context())
	started := make(chan struct{})
	var once sync.Once
	done := make(chan error, 1)
	go func() {
		_, err := c.Exec(ctx, id, run.CellRequest{Code: "sleep"}, client.Live{Stdout: writerFunc(func(p []byte) (int, error) {
			once.Do(func() { close(started) })
			return len(p), nil
		})})
		done <- err
	}()
	<-started
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("after cancel: %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Exec did not return within 5s of its context's end")
	}
}

func TestFiles(t *testing.T) {
	srv, c := newClient(t)
	id := srv.Add(run.SessionSpec{})
	ctx := t.Context()
	content := bytes.Repeat([]byte("0123456789"), 100_000)
	// An io.Reader with no length: the body streams (chunked).
	fi, err := c.PutFile(ctx, id, "dir/with space/#1?.bin", io.MultiReader(bytes.NewReader(content[:10]), bytes.NewReader(content[10:])))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Name != "dir/with space/#1?.bin" || fi.Size != int64(len(content)) {
		t.Errorf("put: %+v", fi)
	}
	if _, err := c.PutFile(ctx, id, "top.txt", strings.NewReader("top")); err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	n, err := c.GetFile(ctx, id, "dir/with space/#1?.bin", &got)
	if err != nil || n != int64(len(content)) || !bytes.Equal(got.Bytes(), content) {
		t.Fatalf("get: %d bytes, %v", n, err)
	}
	list, err := c.ListFiles(ctx, id, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Files) != 4 || list.Files[0].Name != "dir" || list.Files[0].Type != "dir" || list.Files[2].Name != "dir/with space/#1?.bin" ||
		list.Files[3].Name != "top.txt" || list.Files[3].Size != 3 {
		t.Errorf("list: %+v", list)
	}
	list, err = c.ListFiles(ctx, id, "dir/with space")
	if err != nil || len(list.Files) != 1 || list.Files[0].Name != "dir/with space/#1?.bin" {
		t.Errorf("list dir: %+v %v", list, err)
	}
	if err := c.DeleteFile(ctx, id, "top.txt"); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetFile(ctx, id, "top.txt", io.Discard)
	wantError(t, err, http.StatusNotFound, "not_found")
	wantError(t, c.DeleteFile(ctx, id, "top.txt"), http.StatusNotFound, "not_found")
	for _, bad := range []string{"", ".", "/etc/passwd", "../escape", "a/../../b"} {
		if _, err := c.PutFile(ctx, id, bad, strings.NewReader("x")); err == nil || strings.Contains(err.Error(), "sandboxd answered") {
			t.Errorf("put %q: %v, want a refusal before any request", bad, err)
		}
	}
	if _, err := c.ListFiles(ctx, id, "/abs"); err == nil {
		t.Error("list of an absolute directory: no error")
	}
}

// TestErrorBodies: an error answer that is not the API's JSON still makes
// an *Error, with the body as message.
func TestErrorBodies(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "bad gateway from a proxy", http.StatusBadGateway)
	}))
	defer srv.Close()
	_, err := (&client.Client{Base: srv.URL}).ListSessions(t.Context())
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != http.StatusBadGateway || ce.Message != "bad gateway from a proxy" {
		t.Errorf("error %#v", err)
	}
}
