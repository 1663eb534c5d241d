package client_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"

	"github.com/sandboxd/sandboxd/internal/client"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/wire"
)

// A cell's output reaches the writers as the daemon streams it; the
// result, with the value of the cell's trailing expression, comes last.
func ExampleClient_Exec() {
	// A daemon that answers one cell (the real one runs it in a sandbox).
	daemon := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", wire.NDJSON)
		io.WriteString(w, `{"type":"stdout","data":"computing\n"}`+"\n")
		io.WriteString(w, `{"type":"result","result":{"session_id":"s1","cell":2,"status":"ok","stdout":"computing\n","stderr":"","result":{"text/plain":"42"},"wall_time_ms":1,"cpu_time_ms":1,"state":"idle"}}`+"\n")
	}))
	defer daemon.Close()

	c := &client.Client{Base: daemon.URL, Token: "secret"}
	res, err := c.Exec(context.Background(), "s1", run.CellRequest{Code: "print('computing')\n6 * 7"}, client.Live{Stdout: os.Stdout, Stderr: os.Stderr})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(res.Status, res.Result["text/plain"])
	// Output:
	// computing
	// ok 42
}
