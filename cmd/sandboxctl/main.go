// Command sandboxctl runs untrusted programs in a sandbox from the command
// line, with no daemon (`sandboxctl run script.py [args]`, `sandboxctl
// repl`) or on a sandboxd (`--server URL`, `sandboxctl session ...`).
package main

import (
	"os"

	"github.com/sandboxd/sandboxd/internal/cli"
	"github.com/sandboxd/sandboxd/internal/isolate"
	"github.com/sandboxd/sandboxd/internal/isolate/nsinit"
	"github.com/sandboxd/sandboxd/internal/wasm"
)

func main() {
	// The sandbox's init stage is this same binary, re-executed; it must
	// take over before anything else runs.
	nsinit.MaybeRun()
	// And so is the wasm backend's worker.
	wasm.MaybeRun()
	// What this process inherited is none of its children's business.
	isolate.NoInheritedFiles()
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
