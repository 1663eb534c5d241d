package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/testenv"
)

// cpythonSuites are CPython's own tests of what a program does with its
// process: files, pipes, terminals, subprocesses, users, limits. Programs
// that work in a container must work here.
var cpythonSuites = []string{"test_os", "test_subprocess", "test_resource"}

// cpythonByDesign are the tests that contradict a run's limits on purpose:
//
//	test_fsize_ismax         expects no RLIMIT_FSIZE; a run's --file-size is its hard limit
//	test_setrusage_refcount  raises RLIMIT_CPU's hard limit, which a run may not
var cpythonByDesign = []string{
	"test.test_resource.ResourceTest.test_fsize_ismax",
	"test.test_resource.ResourceTest.test_setrusage_refcount",
}

// TestCPythonSuites runs cpythonSuites in a sandbox (python3 -m test) and
// wants every test to pass but cpythonByDesign. It needs Debian's
// libpython3.11-testsuite; it takes a minute or two.
func TestCPythonSuites(t *testing.T) {
	requireSandbox(t)
	const testOS = "/usr/lib/python3.11/test/test_os.py"
	if _, err := os.Stat(testOS); err != nil {
		testenv.MissingFile(t, testOS)
	}
	argv := []string{"python3 -m test", "-q"}
	for _, name := range cpythonByDesign {
		argv = append(argv, "--ignore", name)
	}
	argv = append(argv, cpythonSuites...)
	code := fmt.Sprintf("import runpy, sys\nsys.argv = %s\nrunpy.run_module('test', run_name='__main__', alter_sys=True)\n", pyList(argv))
	file := filepath.Join(t.TempDir(), "cpython_tests.py")
	if err := os.WriteFile(file, []byte(code), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	o := sbx(t, invocation{
		args: []string{"run", "--timeout", "5m", "--cpu-time", "5m", "--memory", "1GiB", "--pids", "256",
			"--open-files", "1024", "--tmpfs", "256MiB", "--output", "4MiB", file},
		timeout: 7 * time.Minute,
	})
	out := string(o.stdout) + string(o.stderr)
	if o.code != 0 || !strings.Contains(out, "Tests result: SUCCESS") {
		t.Fatalf("CPython's %s failed in the sandbox (exit %d):\n%s", strings.Join(cpythonSuites, ", "), o.code, tail([]byte(out)))
	}
}

// pyList is strs as a Python list literal.
func pyList(strs []string) string {
	q := make([]string, len(strs))
	for i, s := range strs {
		q[i] = fmt.Sprintf("%q", s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
