package cli

import (
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/sandboxd/sandboxd/internal/limits"
)

// commands walks sandboxctl's command tree.
func commands(t *testing.T) []*cobra.Command {
	t.Helper()
	var code int
	root := newRoot(strings.NewReader(""), io.Discard, io.Discard, &signals{}, &code)
	var all []*cobra.Command
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		all = append(all, c)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	return all
}

// TestFlagUsage: in every command's help each flag shows a placeholder
// of one word (not a phrase pflag took from backquotes) and at most one
// default.
func TestFlagUsage(t *testing.T) {
	for _, c := range commands(t) {
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if name, _ := pflag.UnquoteUsage(f); strings.ContainsAny(name, " \t") {
				t.Errorf("%s --%s: placeholder %q", c.CommandPath(), f.Name, name)
			}
		})
		for _, line := range strings.Split(c.Flags().FlagUsages(), "\n") {
			if n := strings.Count(line, "(default"); n > 1 || strings.Contains(line, "[default") {
				t.Errorf("%s: more than one default: %q", c.CommandPath(), line)
			}
		}
	}
}

// TestLimitFlagDefaults: each limit flag of run, session new and repl shows
// its default once, from limits.Defaults(), and leaves its variable zero
// ("not set", so that a daemon applies its own).
func TestLimitFlagDefaults(t *testing.T) {
	d := limits.Defaults()
	want := map[string]string{
		"timeout": "10s", "cpu-time": "10s", "memory": "256MiB", "pids": "64", "output": "1MiB",
		"tmpfs": "64MiB", "file-size": "64MiB", "open-files": "256", "cpus": "1",
	}
	// The literal values above are the README's table; check they are
	// still limits.Defaults().
	for name, v := range map[string]string{
		"timeout": d.Timeout.String(), "cpu-time": d.CPUTime.String(), "memory": d.Memory.String(),
		"pids": strconv.Itoa(d.Pids), "output": d.Output.String(), "tmpfs": d.Tmpfs.String(),
		"file-size": d.FileSize.String(), "open-files": strconv.Itoa(d.OpenFiles), "cpus": strconv.FormatFloat(d.CPUs, 'g', -1, 64),
	} {
		if want[name] != v {
			t.Errorf("limits.Defaults() has --%s %s, the README %s", name, v, want[name])
		}
	}
	byPath := map[string]*cobra.Command{}
	for _, c := range commands(t) {
		byPath[c.CommandPath()] = c
	}
	for _, path := range []string{"sandboxctl run", "sandboxctl session new", "sandboxctl repl"} {
		c := byPath[path]
		if c == nil {
			t.Fatalf("no command %q", path)
		}
		for name, def := range want {
			f := c.Flags().Lookup(name)
			if f == nil {
				t.Errorf("%s has no --%s", path, name)
				continue
			}
			if f.DefValue != def {
				t.Errorf("%s --%s: help shows default %q, want %q", path, name, f.DefValue, def)
			}
			if v := f.Value.String(); v != "0" && v != "0s" && v != "0B" {
				t.Errorf("%s --%s: not given, it holds %q, want zero", path, name, v)
			}
			line := usageLine(c, name)
			if strings.Count(line, "(default "+def+")") != 1 {
				t.Errorf("%s --%s: %q does not show (default %s) once", path, name, line, def)
			}
		}
	}
}

// usageLine is the help's line for flag name of c.
func usageLine(c *cobra.Command, name string) string {
	for _, line := range strings.Split(c.Flags().FlagUsages(), "\n") {
		if strings.Contains(line, "--"+name+" ") {
			return line
		}
	}
	return ""
}

// TestPlaceholders: the flags whose argument is a name, a URL or a path
// say so in the help.
func TestPlaceholders(t *testing.T) {
	byPath := map[string]*cobra.Command{}
	for _, c := range commands(t) {
		byPath[c.CommandPath()] = c
	}
	for _, tc := range []struct{ cmd, flag, want string }{
		{"sandboxctl run", "runtime", "NAME"},
		{"sandboxctl run", "server", "URL"},
		{"sandboxctl run", "out", "DIR"},
		{"sandboxctl run", "env", "KEY=VALUE"},
		{"sandboxctl session new", "runtime", "NAME"},
		{"sandboxctl session exec", "save-images", "DIR"},
		{"sandboxctl repl", "runtime", "NAME"},
	} {
		if name, _ := pflag.UnquoteUsage(byPath[tc.cmd].Flags().Lookup(tc.flag)); name != tc.want {
			t.Errorf("%s --%s shows %q, want %q", tc.cmd, tc.flag, name, tc.want)
		}
	}
}

// TestHelpNamesBothKernels: the commands that start sessions do not say
// sessions are Python only.
func TestHelpNamesBothKernels(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"session", "--help"}, {"repl", "--help"}} {
		out, _, code := sandboxctl(t, "", args...)
		if code != 0 {
			t.Fatalf("%q: exit %d", args, code)
		}
		for _, line := range strings.Split(out, "\n") {
			if (strings.Contains(line, "session") || strings.Contains(line, "prompt")) && strings.Contains(line, "Python") && !strings.Contains(line, "JavaScript") &&
				!strings.Contains(line, "Python's") {
				t.Errorf("sandboxctl %s: %q names Python alone", strings.Join(args, " "), line)
			}
		}
	}
}

func TestBanner(t *testing.T) {
	for _, tc := range []struct {
		runtime, version string
		want, not        []string
	}{
		{"python", "3.11.2", []string{"Python 3.11.2 in session s1", "exit()"}, []string{"JavaScript"}},
		{"javascript", "20.19.2", []string{"JavaScript 20.19.2 in session s1", "Ctrl-D"}, []string{"Python", "exit()"}},
		{"ruby", "3.1.2", []string{"Ruby 3.1.2 in session s1", "Ctrl-D"}, []string{"Python"}},
	} {
		got := banner(tc.runtime, tc.version, "in session s1")
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("banner(%s) = %q, want %q in it", tc.runtime, got, w)
			}
		}
		for _, w := range tc.not {
			if strings.Contains(got, w) {
				t.Errorf("banner(%s) = %q, says %q", tc.runtime, got, w)
			}
		}
	}
}
