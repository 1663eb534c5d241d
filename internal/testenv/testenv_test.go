package testenv

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
)

// recorder is a testing.TB that records how it was stopped. Fatalf and
// Skipf end the calling goroutine, as testing's do.
type recorder struct {
	testing.TB
	how, msg string
}

func (r *recorder) Helper()         {}
func (r *recorder) Log(args ...any) { r.msg += fmt.Sprintln(args...) }
func (r *recorder) Fatalf(format string, args ...any) {
	r.how, r.msg = "fail", r.msg+fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (r *recorder) Skipf(format string, args ...any) {
	r.how, r.msg = "skip", r.msg+fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func stop(f func(t testing.TB)) *recorder {
	r := &recorder{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	return r
}

// TestMissing: as root a missing piece fails, otherwise it skips, and
// either way the message names the piece and the command that installs it.
func TestMissing(t *testing.T) {
	want := "skip"
	if os.Geteuid() == 0 {
		want = "fail"
	}
	tests := []struct {
		name string
		f    func(t testing.TB)
		says []string
	}{
		{"file", func(t testing.TB) { MissingFile(t, "/usr/bin/gcc") }, []string{"/usr/bin/gcc is missing", "apt-get install -y gcc libc6-dev", SetUp}},
		{"matplotlib", func(t testing.TB) { MissingFile(t, "/usr/lib/python3/dist-packages/matplotlib") }, []string{"apt-get install -y python3-matplotlib"}},
		{"wasm", func(t testing.TB) { MissingWasmRuntimes(t, errors.New("python.wasm is missing")) }, []string{"python.wasm is missing", "not built", "bash scripts/build-wasm-runtimes.sh"}},
		{"npm", func(t testing.TB) { MissingNPMClient(t, "tests/mcp", "no node on PATH") }, []string{"no node on PATH", "npm ci --prefix tests/mcp"}},
		{"sandbox", func(t testing.TB) { MissingSandbox(t, errors.New("no user namespaces")) }, []string{"no user namespaces"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := stop(tt.f)
			if r.how != want {
				t.Errorf("stopped with %q, want %q: %s", r.how, want, r.msg)
			}
			for _, s := range tt.says {
				if !strings.Contains(r.msg, s) {
					t.Errorf("message %q does not say %q", r.msg, s)
				}
			}
		})
	}
}

// TestMissingFileUnknown: a path the table does not know is the test's
// mistake, whoever runs it.
func TestMissingFileUnknown(t *testing.T) {
	if r := stop(func(t testing.TB) { MissingFile(t, "/usr/bin/cobc") }); r.how != "fail" || !strings.Contains(r.msg, "/usr/bin/cobc") {
		t.Errorf("stopped with %q: %s", r.how, r.msg)
	}
}
