package isolate

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/isolate/nsinit"
)

// testInit is the init binary TestMain built (cmd/sandboxd-init), which
// requireRunner's runners start; "" if it could not be built (the runners
// then re-execute this test binary, as TestInitFallback's always do).
var testInit string

// staleInitDir names the directory of a copy of this test binary that acts
// as an init binary of another build (TestStaleInitRefused).
const staleInitDir = "stale-init"

// TestMain lets the test binary act as the sandbox's init stage: the runner
// re-executes /proc/self/exe, which here is this binary, when it does not
// start the init binary TestMain builds.
func TestMain(m *testing.M) {
	maybeStaleInit()
	maybePlayInit()
	nsinit.MaybeRun()
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "isolate-init-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "isolate tests:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out := filepath.Join(dir, "sandboxd-init")
	build := exec.CommandContext(ctx, "go", "build", "-buildvcs=false", "-o", out, "./cmd/sandboxd-init")
	build.Dir = "../.."
	if b, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "isolate tests: go build ./cmd/sandboxd-init: %v\n%s", err, b)
		return 1
	}
	testInit = out
	return m.Run()
}

// maybeStaleInit plays an init binary of another build when this binary
// runs as init from a directory named staleInitDir: it sends a hello with
// a build of its own and waits for a "go" that must never come.
func maybeStaleInit() {
	exe, err := os.Executable()
	if len(os.Args) == 0 || os.Args[0] != nsinit.Arg0 || err != nil || filepath.Base(filepath.Dir(exe)) != staleInitDir {
		return
	}
	_, _ = os.NewFile(nsinit.StatusFD, "status").WriteString(`{"build":"0ld"}` + "\n")
	_, _ = io.Copy(io.Discard, os.NewFile(nsinit.ConfigFD, "config"))
	// The parent closed the config pipe: it gave the "go". Say so
	// loudly, as a setup failure the test sees.
	_, _ = os.NewFile(nsinit.StatusFD, "status").WriteString(`{"op":"stale init","error":"got the go"}` + "\n")
	syscall.Exit(nsinit.ExitSetupFailed)
}
