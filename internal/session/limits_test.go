package session

import (
	"bytes"
	"encoding/base64"
	"errors"
	"image/png"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/runtimes"
	"github.com/sandboxd/sandboxd/internal/testenv"
)

// TestCellLimits: each per-cell limit interrupts the cell with its own
// status, and the session goes on.
func TestCellLimits(t *testing.T) {
	m := newManager(t, Config{})
	s, err := m.Create(t.Context(), "me", &run.SessionSpec{Limits: limits.Limits{CPUTime: limits.Duration(300 * time.Millisecond), Output: 4 * limits.KiB, Timeout: limits.Duration(20 * time.Second)}})
	if err != nil {
		t.Fatal(err)
	}
	exec(t, s, "kept = 'yes'")
	cases := []struct {
		name, code string
		status     run.Status
		check      func(*run.CellResult) bool
	}{
		{"cpu", "while True: pass", run.StatusCPULimit, func(r *run.CellResult) bool { return r.CPUTime >= 300*time.Millisecond }},
		{"output", "while True: print('x' * 100)", run.StatusOutputLimit, func(r *run.CellResult) bool { return r.StdoutTruncated && len(r.Stdout) == 4096 }},
	}
	for _, c := range cases {
		res := exec(t, s, c.code)
		if res.Status != c.status || res.State != run.SessionIdle || !c.check(res) {
			t.Errorf("%s: status %s state %s reason %q cpu %v stdout %d bytes truncated %v", c.name, res.Status, res.State, res.Reason, res.CPUTime, len(res.Stdout), res.StdoutTruncated)
		}
		if r := exec(t, s, "kept"); r.Result["text/plain"] != "'yes'" {
			t.Errorf("after %s the session lost its state: %+v", c.name, r)
		}
	}
}

// TestMemoryLimitKillsSession: a cell past the session's memory limit
// kills the kernel; the status says memory_limit and the session is dead.
func TestMemoryLimitKillsSession(t *testing.T) {
	m := newManager(t, Config{})
	s, err := m.Create(t.Context(), "me", &run.SessionSpec{Limits: limits.Limits{Memory: 64 * limits.MiB}})
	if err != nil {
		t.Fatal(err)
	}
	res := exec(t, s, "blocks = []\nwhile True: blocks.append(bytearray(8 << 20))")
	if res.Status != run.StatusMemoryLimit || res.State != run.SessionDead || !strings.Contains(res.Reason, "64MiB") {
		t.Fatalf("status %s state %s reason %q", res.Status, res.State, res.Reason)
	}
}

// TestOutputOfEveryWriterBelongsToItsCell: output written straight to the
// file descriptors (a subprocess, os.write) right before a cell ends is
// that cell's, never the next one's.
func TestOutputOfEveryWriterBelongsToItsCell(t *testing.T) {
	m := newManager(t, Config{})
	s, err := m.Create(t.Context(), "me", &run.SessionSpec{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		code := "import os, subprocess\nsubprocess.run(['/bin/echo', 'sub'])\nos.write(1, b'raw' * 3000)\nos.write(2, b'err')\nprint('end', end='')"
		res := exec(t, s, code)
		want := "sub\n" + strings.Repeat("raw", 3000) + "end"
		if string(res.Stdout) != want || string(res.Stderr) != "err" {
			t.Fatalf("cell %d: stdout %d bytes (want %d), stderr %q", i, len(res.Stdout), len(want), res.Stderr)
		}
	}
}

// TestLiveOutput: output reaches the live writers as the cell runs, and
// displays the callback.
func TestLiveOutput(t *testing.T) {
	m := newManager(t, Config{})
	s, err := m.Create(t.Context(), "me", &run.SessionSpec{})
	if err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	var displays []run.MIMEBundle
	res, err := s.Exec(t.Context(), run.CellRequest{Code: "print('a', flush=True)\nclass P:\n  def _repr_html_(self): return '<i>p</i>'\ndisplay(P())"}, run.CellStream{Stdout: &out, Display: func(b run.MIMEBundle) { displays = append(displays, b) }})
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != "a\n" || len(displays) != 1 || displays[0]["text/html"] != "<i>p</i>" || len(res.Display) != 1 {
		t.Errorf("live %q displays %v result %+v", out.String(), displays, res)
	}
}

// matplotlibInstalled is where Debian's python3-matplotlib lives.
const matplotlibInstalled = "/usr/lib/python3/dist-packages/matplotlib"

// TestPlotIsPNG: a matplotlib figure comes back as a PNG of the figure's
// size.
func TestPlotIsPNG(t *testing.T) {
	if _, err := os.Stat(matplotlibInstalled); err != nil {
		testenv.MissingFile(t, matplotlibInstalled)
	}
	m := newManager(t, Config{})
	s, err := m.Create(t.Context(), "me", &run.SessionSpec{Limits: limits.Limits{Timeout: limits.Duration(60 * time.Second)}})
	if err != nil {
		t.Fatal(err)
	}
	res := exec(t, s, "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.title('t')\nplt.show()")
	if res.Status != run.StatusOK || len(res.Display) != 1 {
		t.Fatalf("status %s displays %d stderr %s error %+v", res.Status, len(res.Display), res.Stderr, res.Error)
	}
	b, err := base64.StdEncoding.DecodeString(res.Display[0]["image/png"])
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	if bd := img.Bounds(); bd.Dx() < 200 || bd.Dy() < 150 {
		t.Errorf("image of %v", bd)
	}
	t.Logf("first plot without the cache: %v", res.WallTime)
	// Figures shown are closed: the next cell displays nothing again.
	if res := exec(t, s, "1"); len(res.Display) != 0 {
		t.Errorf("a shown figure came back: %d displays", len(res.Display))
	}
}

// TestFontCache: with Prime, Python sessions start with matplotlib's font
// list built once ahead, and matplotlib takes it as is (no rebuild).
func TestFontCache(t *testing.T) {
	python, _ := runtimes.Default().Lookup("python")
	if _, err := os.Stat(python.Kernel.Prime.Needs); err != nil {
		testenv.MissingFile(t, python.Kernel.Prime.Needs)
	}
	m := newManager(t, Config{Prime: true})
	if _, err := m.Create(t.Context(), "me", &run.SessionSpec{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(90 * time.Second)
	for m.primes.get(m.life, &m.wg, m.cfg.Runner, python) == nil {
		if time.Now().After(deadline) {
			t.Fatal("the font cache was not built")
		}
		time.Sleep(100 * time.Millisecond)
	}
	s, err := m.Create(t.Context(), "me", &run.SessionSpec{Limits: limits.Limits{Timeout: limits.Duration(60 * time.Second)}})
	if err != nil {
		t.Fatal(err)
	}
	code := "import os, glob\nd = os.environ['MPLCONFIGDIR']\nf = glob.glob(d + '/fontlist-*.json')[0]\nbefore = os.stat(f).st_mtime_ns\n" +
		"import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()\n(d, os.stat(f).st_mtime_ns == before)"
	res := exec(t, s, code)
	if res.Status != run.StatusOK || res.Result["text/plain"] != "('/workspace/.sandboxd/matplotlib', True)" || len(res.Display) != 1 {
		t.Fatalf("status %s result %q displays %d error %+v stderr %s", res.Status, res.Result["text/plain"], len(res.Display), res.Error, res.Stderr)
	}
	t.Logf("first plot with the cache: %v", res.WallTime)
}

// TestHostileAnswers: a cell that writes to the kernel's answer pipe
// itself can only break its own session: a forged line that is not the
// protocol kills the kernel (internal_error, the session dead), and a
// line past the cap is refused the same way, without the daemon holding
// it whole; a cell's displays are capped.
func TestHostileAnswers(t *testing.T) {
	m := newManager(t, Config{})
	findFD := "import gc\nfd = [o for o in gc.get_objects() if type(o).__name__ == '_Kernel'][0].answers\n"
	cases := []struct {
		name, code string
		status     run.Status
		state      run.SessionState
		reason     string
	}{
		{"garbage", findFD + "import os\nos.write(fd, b'{not json\\n')\nimport time\ntime.sleep(5)", run.StatusInternalError, run.SessionDead, "protocol"},
		{"unknown type", findFD + "import os\nos.write(fd, b'{\"type\": \"root\"}\\n')\nimport time\ntime.sleep(5)", run.StatusInternalError, run.SessionDead, "protocol"},
		{"huge line", findFD + "import os\nchunk = b'x' * (1 << 20)\nfor _ in range(40): os.write(fd, chunk)\nimport time\ntime.sleep(5)", run.StatusInternalError, run.SessionDead, "protocol"},
		{"display flood", "class Big:\n  def _repr_html_(self): return 'x' * (1 << 20)\nfor _ in range(80): display(Big())", run.StatusOutputLimit, run.SessionIdle, "displayed more than"},
	}
	for _, c := range cases {
		s, err := m.Create(t.Context(), "me", &run.SessionSpec{Limits: limits.Limits{Memory: 512 * limits.MiB, Timeout: limits.Duration(30 * time.Second)}})
		if err != nil {
			t.Fatal(err)
		}
		res := exec(t, s, c.code)
		if res.Status != c.status || res.State != c.state || !strings.Contains(res.Reason, c.reason) {
			t.Errorf("%s: status %s state %s reason %q", c.name, res.Status, res.State, res.Reason)
		}
		if c.state == run.SessionIdle {
			if r := exec(t, s, "1+1"); r.Result["text/plain"] != "2" {
				t.Errorf("%s: the session did not go on: %+v", c.name, r)
			}
		}
		if err := m.Delete("me", s.ID()); err != nil {
			t.Fatal(err)
		}
	}
}

// TestListingHasUserFilesOnly: what the kernel and the libraries keep for
// themselves (fontconfig's cache, built when matplotlib lists the host's
// fonts) stays out of the session's file listing: it shows the files the
// cells wrote, nothing else.
func TestListingHasUserFilesOnly(t *testing.T) {
	if _, err := os.Stat(matplotlibInstalled); err != nil {
		testenv.MissingFile(t, matplotlibInstalled)
	}
	m := newManager(t, Config{})
	s, err := m.Create(t.Context(), "me", &run.SessionSpec{Limits: limits.Limits{Memory: 512 * limits.MiB, Timeout: limits.Duration(60 * time.Second)}})
	if err != nil {
		t.Fatal(err)
	}
	res := exec(t, s, "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.savefig('plot.png')\nplt.show()")
	if res.Status != run.StatusOK || len(res.Display) != 1 {
		t.Fatalf("status %s displays %d stderr %s error %+v", res.Status, len(res.Display), res.Stderr, res.Error)
	}
	files, _, err := s.ListFiles(".", 100)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, f.Name)
	}
	if !slices.Equal(names, []string{"plot.png"}) {
		t.Errorf("the listing is %q; want only the cell's plot.png", names)
	}
}

// TestHostileFieldName: a cell that sends, on the kernel's answer pipe,
// an answer with a field name of a MiB kills its session, and the reason
// the session keeps (and every GET of it repeats), the cell's result and
// the daemon's log are bounded: the name is not copied into them whole.
func TestHostileFieldName(t *testing.T) {
	logs := &testenv.LogSizes{}
	m := newManager(t, Config{Logger: slog.New(logs)})
	s, err := m.Create(t.Context(), "me", &run.SessionSpec{Limits: limits.Limits{Memory: 512 * limits.MiB, Timeout: limits.Duration(30 * time.Second)}})
	if err != nil {
		t.Fatal(err)
	}
	code := "import gc, os, time\nfd = [o for o in gc.get_objects() if type(o).__name__ == '_Kernel'][0].answers\n" +
		"os.write(fd, b'{\"type\": \"done\", \"' + b'f' * (1 << 20) + b'\": 1}\\n')\ntime.sleep(5)"
	res := exec(t, s, code)
	if res.Status != run.StatusInternalError || res.State != run.SessionDead || !strings.Contains(res.Reason, "protocol") {
		t.Fatalf("status %s state %s reason %.200q", res.Status, res.State, res.Reason)
	}
	const bound = run.MaxMessage + 200
	if len(res.Reason) > bound {
		t.Errorf("the cell's reason is %d bytes", len(res.Reason))
	}
	if r := s.Info().Reason; len(r) > bound || !strings.Contains(r, "bytes in all") {
		t.Errorf("the session's reason is %d bytes: %.200q", len(r), r)
	}
	if _, err := s.Exec(t.Context(), run.CellRequest{Code: "1"}, run.CellStream{}); !errors.Is(err, ErrDead) || len(err.Error()) > bound {
		t.Errorf("a cell of the dead session: %d bytes: %.200v", len(err.Error()), err)
	}
	if err := m.Delete("me", s.ID()); err != nil {
		t.Fatal(err)
	}
	if n := logs.Longest(); n > bound {
		t.Errorf("a log record of %d bytes", n)
	}
}
