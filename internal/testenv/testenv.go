// Package testenv stops a test that lacks a piece of the host the suite
// needs: as root it fails with the command that installs the piece, else it
// skips with the reason. Only tests import it.
//
// The rule (RATIONALE.md, "Tests: which may skip"): the suite's pieces
// (Debian's python3, gcc, g++, node and data stack, the npm clients, the
// wasm interpreters, a working process backend) are all installed by
// scripts/test, which runs as root. So as root a missing piece is a
// set-up mistake and fails, naming its fix; without root none of them can
// be installed or used, and the test skips. What a host may lack for good
// (an architecture, a kernel option) is not a piece: those tests skip on
// their own, each saying what the host lacks.
package testenv

import (
	"os"
	"testing"
)

// SetUp is the command that installs every piece at once.
const SetUp = "scripts/test"

// Missing stops t: piece is what is missing ("/usr/bin/gcc is missing"),
// fix the command that installs it.
func Missing(t testing.TB, piece, fix string) {
	t.Helper()
	if os.Geteuid() == 0 {
		t.Fatalf("%s: run %s (or %s, which installs everything the tests need)", piece, fix, SetUp)
	}
	t.Skipf("skipped, not root: %s (as root: %s, or %s)", piece, fix, SetUp)
}

// debian names the Debian packages that install each file the tests look
// for (what scripts/test installs).
var debian = map[string]string{
	"/usr/bin/python3":                      "python3",
	"/usr/bin/bash":                         "bash",
	"/bin/sh":                               "dash",
	"/usr/bin/sh":                           "dash",
	"/usr/bin/gcc":                          "gcc libc6-dev",
	"/usr/bin/g++":                          "g++",
	"/usr/bin/node":                         "nodejs",
	"/usr/bin/ruby":                         "ruby",
	"/usr/lib/python3/dist-packages/numpy":  "python3-numpy",
	"/usr/lib/python3/dist-packages/pandas": "python3-pandas",
	"/usr/lib/python3/dist-packages/matplotlib":     "python3-matplotlib",
	"/usr/bin/jupyter-notebook":                     "jupyter-notebook",
	"/usr/bin/chromium":                             "chromium",
	"/usr/lib/python3/dist-packages/jupyter_server": "python3-jupyter-server",
	"/usr/lib/python3.11/test/test_os.py":           "libpython3.11-testsuite",
}

// MissingFile stops t for want of path, one of the files Debian packages
// install above.
func MissingFile(t testing.TB, path string) {
	t.Helper()
	pkg, ok := debian[path]
	if !ok {
		t.Fatalf("testenv: no Debian package known for %s: add it to the table", path)
	}
	Missing(t, path+" is missing", "apt-get install -y "+pkg)
}

// MissingWasmRuntimes stops t for want of the wasm backend's interpreters;
// err, logged, says which file is missing.
func MissingWasmRuntimes(t testing.TB, err error) {
	t.Helper()
	t.Log(err)
	Missing(t, "the wasm interpreters are not built", "bash scripts/build-wasm-runtimes.sh")
}

// MissingNPMClient stops t for want of node or of the npm packages of dir
// (a directory under tests/, relative to the module root).
func MissingNPMClient(t testing.TB, dir, what string) {
	t.Helper()
	Missing(t, what, "npm ci --prefix "+dir+" (needs node and npm: apt-get install -y nodejs npm)")
}

// MissingSandbox stops t when the process backend does not start (err).
// As root that means the host lacks user namespaces or cgroups, which the
// suite needs; nothing installs them, so the message says how to find out.
func MissingSandbox(t testing.TB, err error) {
	t.Helper()
	if os.Geteuid() == 0 {
		t.Fatalf("the process backend does not start as root: %v; the suite needs user namespaces and cgroups (go run ./cmd/sandboxctl doctor names what this host lacks)", err)
	}
	t.Skipf("skipped, not root: the process backend needs root, user namespaces and cgroups: %v", err)
}
