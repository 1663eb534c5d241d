package isolate

import (
	"os"
	"testing"

	"github.com/sandboxd/sandboxd/internal/isolate/nsinit"
)

// TestMain lets the test binary act as the sandbox's init stage: the runner
// re-executes /proc/self/exe, which here is this binary.
func TestMain(m *testing.M) {
	nsinit.MaybeRun()
	os.Exit(m.Run())
}
