package runtimes

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/testenv"
)

// requireBinary stops the test unless path is an executable on this host
// (testenv.MissingFile: fails as root, skips otherwise).
func requireBinary(t *testing.T, path string) {
	t.Helper()
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm()&0o111 == 0 {
		testenv.MissingFile(t, path)
	}
}

func TestExtractVersion(t *testing.T) {
	builtins := make(map[string]*Runtime)
	for _, rt := range builtin() {
		builtins[rt.Name] = rt
	}
	tests := []struct {
		runtime string
		output  string
		want    string // "" means no match
	}{
		{"python", "Python 3.11.2\n", "3.11.2"},
		{"python", "Python 3.13.0rc1\n", "3.13.0"},
		{"javascript", "v20.20.2\n", "20.20.2"},
		{"ruby", "ruby 3.1.2p20 (2022-04-12 revision 4491bb740a) [x86_64-linux-gnu]\n", "3.1.2"},
		{"ruby", "ruby 3.3.0 (2023-12-25 revision 5124f9ac75) [x86_64-linux]\n", "3.3.0"},
		{"ruby", "jruby 9.4.2.0 (3.1.0) 2023-03-08 90d2913fda OpenJDK 64-Bit Server VM\n", ""},
		{"bash", "GNU bash, version 5.2.15(1)-release (x86_64-pc-linux-gnu)\nCopyright (C) 2022 Free Software Foundation, Inc.\n", "5.2.15"},
		{"sh", "0.5.12-2", "0.5.12"},
		{"sh", "dpkg-query: no packages found matching dash\n", ""},
		{"c", "gcc (Debian 12.2.0-14) 12.2.0\nCopyright (C) 2022 Free Software Foundation, Inc.\n", "12.2.0"},
		{"c", "gcc (Debian 12.2.0-14+deb12u1) 12.2.0\n", "12.2.0"},
		{"c++", "g++ (Debian 12.2.0-14+deb12u1) 12.2.0\n", "12.2.0"},
		{"c", "Copyright (C) 2022 Free Software Foundation, Inc.\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.runtime+"/"+tt.output, func(t *testing.T) {
			rt := builtins[tt.runtime]
			got, err := extractVersion(rt.Name, regexp.MustCompile(rt.VersionRegexp), tt.output)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("extractVersion(%q) = %q, want an error", tt.output, got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("extractVersion(%q) = %q, %v; want %q", tt.output, got, err, tt.want)
			}
		})
	}
	if v, err := extractVersion("x", regexp.MustCompile(""), "\n  x 1.0  \nmore\n"); v != "x 1.0" || err != nil {
		t.Errorf("extractVersion with no regexp = %q, %v; want the first line", v, err)
	}
}

func TestVersionHostPython(t *testing.T) {
	requireBinary(t, "/usr/bin/python3")
	out, err := exec.Command("/usr/bin/python3", "-c", "import platform; print(platform.python_version())").Output()
	if err != nil {
		t.Fatal(err)
	}
	g := Default()
	rt, err := g.Lookup("python")
	if err != nil {
		t.Fatal(err)
	}
	got, err := g.Version(t.Context(), rt)
	if err != nil {
		t.Fatalf("Version(python): %v", err)
	}
	// platform.python_version may carry a suffix ("3.13.0rc1").
	if want := strings.TrimSpace(string(out)); !strings.HasPrefix(want, got) || got == "" {
		t.Fatalf("Version(python) = %q, want the prefix of %q", got, want)
	}
}

// TestVersionHost probes every built-in runtime installed here.
func TestVersionHost(t *testing.T) {
	g := Default()
	looksLikeVersion := regexp.MustCompile(`^\d+(\.\d+)+$`)
	for _, rt := range g.All() {
		t.Run(rt.Name, func(t *testing.T) {
			requireBinary(t, rt.Binary)
			v, err := g.Version(t.Context(), rt)
			if err != nil {
				t.Fatalf("Version: %v", err)
			}
			if v != UnknownVersion && !looksLikeVersion.MatchString(v) {
				t.Fatalf("Version = %q, want a dotted version or %q", v, UnknownVersion)
			}
			t.Logf("%s %s", rt.Name, v)
		})
	}
}

// counted returns a runtime whose version probe appends a line to a file in
// a temporary directory each time it runs, and a func that counts the runs.
// The probe is the test's own trusted command.
func counted(t *testing.T, name, script string) (*Runtime, func() int) {
	t.Helper()
	requireBinary(t, "/bin/sh")
	file := filepath.Join(t.TempDir(), "probes")
	rt := &Runtime{
		Name:          name,
		Run:           []string{"/bin/sh", "{entry}"},
		Binary:        "/bin/sh",
		VersionCmd:    []string{"/bin/sh", "-c", `echo probe >> "$0"; ` + script, file},
		VersionRegexp: `v(\d+(?:\.\d+)+)`,
	}
	return rt, func() int {
		data, err := os.ReadFile(file)
		if errors.Is(err, os.ErrNotExist) {
			return 0
		}
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(string(data), "\n")
	}
}

func TestVersionCached(t *testing.T) {
	rt, probes := counted(t, "fake", "echo fake v1.2.3")
	g, err := New(rt)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		v, err := g.Version(t.Context(), rt)
		if err != nil || v != "1.2.3" {
			t.Fatalf("call %d: Version = %q, %v; want 1.2.3", i, v, err)
		}
	}
	if n := probes(); n != 1 {
		t.Fatalf("probe ran %d times, want 1", n)
	}
}

func TestVersionErrorsCached(t *testing.T) {
	rt, probes := counted(t, "fake", "echo no version here")
	g, err := New(rt)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := g.Version(t.Context(), rt); err == nil || !strings.Contains(err.Error(), "does not match") {
			t.Fatalf("Version = %v, want a no-match error", err)
		}
	}
	if n := probes(); n != 1 {
		t.Fatalf("probe ran %d times, want 1", n)
	}
}

func TestVersionConcurrent(t *testing.T) {
	a, probesA := counted(t, "a", "sleep 0.1; echo v1.0.0")
	b, probesB := counted(t, "b", "echo v2.0")
	g, err := New(a, b)
	if err != nil {
		t.Fatal(err)
	}
	cfg := writeFile(t, `[{"name": "c", "run": ["/bin/sh"], "binary": "/bin/sh"}]`)
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 100 {
		wg.Go(func() {
			rt, want := a, "1.0.0"
			if i%2 == 1 {
				rt, want = b, "2.0"
			}
			if v, err := g.Version(t.Context(), rt); err != nil || v != want {
				errs <- fmt.Errorf("Version(%s) = %q, %v; want %q", rt.Name, v, err, want)
			}
			// Readers and a writer of the registry alongside the probes.
			if _, err := g.Lookup("a"); err != nil {
				errs <- err
			}
			_ = g.All()
			if i%10 == 0 {
				if err := g.LoadFile(cfg); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n, m := probesA(), probesB(); n != 1 || m != 1 {
		t.Fatalf("probes ran %d and %d times, want 1 each", n, m)
	}
}

func TestVersionCallerGivesUp(t *testing.T) {
	rt, probes := counted(t, "slow", "sleep 0.3; echo v3.0")
	g, err := New(rt)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, err := g.Version(ctx, rt); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Version with a short ctx = %v, want DeadlineExceeded", err)
	}
	// The probe went on without the caller, and its result is not poisoned
	// by the caller's deadline.
	if v, err := g.Version(t.Context(), rt); err != nil || v != "3.0" {
		t.Fatalf("Version = %q, %v; want 3.0", v, err)
	}
	if n := probes(); n != 1 {
		t.Fatalf("probe ran %d times, want 1", n)
	}
}

func TestVersionProbeTimeout(t *testing.T) {
	rt, _ := counted(t, "hang", "exec sleep 30")
	g, err := New(rt)
	if err != nil {
		t.Fatal(err)
	}
	g.probeTimeout = 100 * time.Millisecond
	start := time.Now()
	_, err = g.Version(t.Context(), rt)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Version of a hanging probe = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Version took %v, want about the probe timeout", d)
	}
}

func TestVersionSpecialCases(t *testing.T) {
	requireBinary(t, "/bin/sh")
	missing := filepath.Join(t.TempDir(), "missing")
	tests := []struct {
		name    string
		rt      *Runtime
		want    string
		wantErr error
	}{
		{
			name: "no version cmd",
			rt:   &Runtime{Name: "x", Run: []string{"/bin/sh"}, Binary: "/bin/sh"},
			want: UnknownVersion,
		},
		{
			// As for sh on a host without dpkg-query.
			name: "version cmd not installed",
			rt:   &Runtime{Name: "x", Run: []string{"/bin/sh"}, Binary: "/bin/sh", VersionCmd: []string{missing, "-W"}},
			want: UnknownVersion,
		},
		{
			name:    "binary not installed",
			rt:      &Runtime{Name: "x", Run: []string{missing}, Binary: missing, VersionCmd: []string{"/bin/sh", "-c", "echo 1.0"}},
			wantErr: ErrUnavailable,
		},
		{
			name:    "binary is a directory",
			rt:      &Runtime{Name: "x", Run: []string{"/bin/sh"}, Binary: t.TempDir()},
			wantErr: ErrUnavailable,
		},
		{
			name:    "probe fails",
			rt:      &Runtime{Name: "x", Run: []string{"/bin/sh"}, Binary: "/bin/sh", VersionCmd: []string{"/bin/sh", "-c", "echo 1.0; exit 3"}},
			wantErr: &exec.ExitError{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := New(tt.rt)
			if err != nil {
				t.Fatal(err)
			}
			v, err := g.Version(t.Context(), tt.rt)
			switch want := tt.wantErr.(type) {
			case nil:
				if err != nil || v != tt.want {
					t.Fatalf("Version = %q, %v; want %q", v, err, tt.want)
				}
			case *exec.ExitError:
				if !errors.As(err, &want) {
					t.Fatalf("Version = %q, %v; want an *exec.ExitError", v, err)
				}
			default:
				if !errors.Is(err, want) {
					t.Fatalf("Version = %q, %v; want %v", v, err, want)
				}
			}
		})
	}
	if _, err := Default().Version(t.Context(), nil); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Version(nil) = %v, want ErrUnavailable", err)
	}
}

func TestLoadFileDropsCachedVersion(t *testing.T) {
	rt, _ := counted(t, "fake", "echo v1.0")
	g, err := New(rt)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := g.Version(t.Context(), rt); err != nil || v != "1.0" {
		t.Fatalf("Version = %q, %v", v, err)
	}
	cfg := writeFile(t, `[{"name": "fake", "run": ["/bin/sh"], "binary": "/bin/sh",
		"version_cmd": ["/bin/sh", "-c", "echo v2.0"], "version_regexp": "v(\\S+)"}]`)
	if err := g.LoadFile(cfg); err != nil {
		t.Fatal(err)
	}
	next, err := g.Lookup("fake")
	if err != nil {
		t.Fatal(err)
	}
	if v, err := g.Version(t.Context(), next); err != nil || v != "2.0" {
		t.Fatalf("Version after override = %q, %v; want 2.0", v, err)
	}
	g.vmu.Lock()
	_, stale := g.versions[rt]
	g.vmu.Unlock()
	if stale {
		t.Fatal("the replaced runtime's version is still cached")
	}
}
