package wasm_test

import (
	"context"
	"fmt"
	"os"

	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/wasm"
)

// A Runner runs WASI commands with the run contract's limits and result.
// Python and JavaScript are the modules "python" and "quickjs", once
// scripts/build-wasm-runtimes.sh built them.
func Example() {
	ctx := context.Background()
	r, err := wasm.New(ctx, wasm.Config{Mode: wasm.ModeInProcess, NoDiskCache: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer r.Close(ctx)
	res, err := r.Run(ctx, wasm.Exec{
		Module: "testdata/hello.wasm",
		Argv:   []string{"hello"},
		Stream: run.Stream{Stdout: os.Stdout},
		Limits: limits.Defaults(),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(res.Status, res.ExitCode, res.Isolation.Backend)
	// Output:
	// hello
	// ok 0 wasm
}
