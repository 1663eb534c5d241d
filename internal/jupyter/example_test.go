package jupyter_test

import (
	"context"
	"net/http"

	"github.com/sandboxd/sandboxd/internal/api"
	"github.com/sandboxd/sandboxd/internal/jupyter"
	"github.com/sandboxd/sandboxd/internal/session"
)

// The gateway is mounted on the API server, behind its token and browser
// checks, as `sandboxd serve` does; then `jupyter notebook
// --gateway-url=http://127.0.0.1:8080` runs its kernels in sessions.
func ExampleGateway_Routes() {
	ctx := context.Background()
	sessions := session.NewManager(ctx, session.Config{})
	defer sessions.Close()
	gw := jupyter.New(ctx, jupyter.Config{Sessions: sessions, Owner: api.Owner})
	defer gw.Close()
	srv := api.New(nil, api.Config{Sessions: sessions, Tokens: []string{"secret"}})
	for _, r := range gw.Routes() {
		srv.Handle(r.Pattern, r.Handler)
	}
	_ = http.ListenAndServe("127.0.0.1:8080", srv)
}
