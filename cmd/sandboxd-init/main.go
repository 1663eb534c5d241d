// Command sandboxd-init is the init stage of the process backend alone: the
// small binary sandboxd and sandboxctl execute in each run's new namespaces
// when it lies beside them (internal/isolate, initbin_linux.go), instead of
// re-executing themselves. It links nsinit and what that needs, nothing of
// the daemon (TestInitImports keeps it so), so each run pays the start-up
// of a 3-4 MB binary, not the package initialisation of a 20 MB one.
package main

import (
	"fmt"
	"os"

	"github.com/sandboxd/sandboxd/internal/isolate/nsinit"
)

func main() {
	nsinit.MaybeRun()
	// Not started as an init stage: nothing to do here.
	fmt.Fprintf(os.Stderr, "sandboxd-init is started by sandboxd and sandboxctl as the init stage of a sandbox, not by hand (build %s)\n", nsinit.Build())
	os.Exit(2)
}
