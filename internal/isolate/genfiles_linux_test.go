package isolate

import (
	"regexp"
	"strings"
	"testing"

	"github.com/sandboxd/sandboxd/internal/limits"
)

// TestMeminfo: the generated meminfo is a machine of the run's memory, in
// the kernel's format, with the fields free(1) and psutil parse.
func TestMeminfo(t *testing.T) {
	m := meminfo(96 * limits.MiB)
	for _, want := range []string{
		"MemTotal:          98304 kB\n",
		"MemFree:           98304 kB\n",
		"MemAvailable:      98304 kB\n",
		"Buffers:               0 kB\n",
		"Cached:                0 kB\n",
		"SwapTotal:             0 kB\n",
		"Shmem:                 0 kB\n",
		"SReclaimable:          0 kB\n",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("meminfo lacks %q:\n%s", want, m)
		}
	}
	line := regexp.MustCompile(`^[A-Za-z_()]+:\s+\d+ kB$`)
	for _, l := range strings.Split(strings.TrimSuffix(m, "\n"), "\n") {
		if !line.MatchString(l) {
			t.Errorf("line %q is not in the kernel's format", l)
		}
	}
}

// TestBootID: a boot id is a version 4 UUID, as the kernel's, and a new
// one each time.
func TestBootID(t *testing.T) {
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\n$`)
	a, b := newBootID(), newBootID()
	if !uuid.MatchString(a) || !uuid.MatchString(b) || a == b {
		t.Errorf("boot ids %q and %q: want two different version 4 UUIDs", a, b)
	}
}
