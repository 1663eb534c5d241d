package cli

import (
	"strings"
	"testing"
)

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
		{"javascript", "20.19.2", []string{"JavaScript (node 20.19.2) in session s1", "Ctrl-D"}, []string{"Python", "exit()"}},
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
