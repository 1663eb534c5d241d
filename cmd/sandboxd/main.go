// Command sandboxd is the sandbox daemon. The HTTP API and the MCP server
// are not built yet; today it only acts as the sandbox's init stage and
// says so.
package main

import (
	"fmt"
	"os"

	"github.com/sandboxd/sandboxd/internal/isolate/nsinit"
)

func main() {
	nsinit.MaybeRun()
	fmt.Fprintln(os.Stderr, "sandboxd: the HTTP API and MCP server are not built yet; use `sandboxctl run FILE` to run a program in the sandbox")
	os.Exit(2)
}
