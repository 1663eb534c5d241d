package output

import (
	"bytes"
	"io"
	"os"
	"runtime"
	"testing"

	"github.com/sandboxd/sandboxd/internal/spool"
)

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("needs /proc/self/fd (Linux) to count this process's open fds")
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func newSpool(t *testing.T) *spool.Dir {
	t.Helper()
	sp, err := spool.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

// readAll reads what a Spooled holds through its Reader.
func readAll(t *testing.T, f *spool.File) []byte {
	t.Helper()
	b, err := io.ReadAll(f.Reader())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCaptureSpools: a Capture with a Spool keeps up to SpoolAt bytes in
// memory, as without; past it every kept byte is in the spool file, in
// order, and none on the heap. The cap and the truncation are as without
// a spool, the file has no name in the spool's directory, and closing it
// gives its fd back.
func TestCaptureSpools(t *testing.T) {
	sp := newSpool(t)
	fds := openFDs(t)
	for _, tc := range []struct {
		name    string
		max     int64
		writes  []int
		spooled bool
	}{
		{"under", 4 * SpoolAt, []int{SpoolAt}, false},
		{"one past", 4 * SpoolAt, []int{SpoolAt, 1}, true},
		{"one large write", 4 * SpoolAt, []int{3 * SpoolAt}, true},
		{"cut at the cap", 2*SpoolAt + 5, []int{SpoolAt - 1, SpoolAt, 7, 100}, true},
		{"cap under the spool", SpoolAt / 2, []int{SpoolAt}, false},
		{"small writes", 3 * SpoolAt, []int{65536, 65536, 65536, 65536, 65536, 65536, 65536, 65536, 65536, 65536, 65536, 65536, 65536, 65536, 65536, 65536, 65536}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var want, live []byte
			c := New(tc.max, writerFunc(func(p []byte) { live = append(live, p...) }), nil)
			c.SetSpool(sp)
			plain := New(tc.max, nil, nil)
			for i, n := range tc.writes {
				p := bytes.Repeat([]byte{byte('a' + i)}, n)
				c.Write(p)
				plain.Write(p)
			}
			want, wantTrunc := plain.Result()
			got, truncated := c.Result()
			f := c.File()
			if (f != nil) != tc.spooled {
				t.Fatalf("spooled %v, want %v", f != nil, tc.spooled)
			}
			if f != nil {
				if len(got) != 0 {
					t.Errorf("%d bytes on the heap besides the spool file", len(got))
				}
				if f.Len() != int64(len(want)) {
					t.Errorf("spooled %d bytes, want %d", f.Len(), len(want))
				}
				got = readAll(t, f)
				if again := readAll(t, f); !bytes.Equal(again, got) {
					t.Error("a second Reader reads other bytes")
				}
				if b, err := f.Bytes(); err != nil || !bytes.Equal(b, got) {
					t.Errorf("Bytes: %d bytes, %v", len(b), err)
				}
				if !f.UTF8() {
					t.Error("ASCII is not UTF-8")
				}
				if c.File() != nil {
					t.Error("File handed the spool over twice")
				}
			}
			if !bytes.Equal(got, want) || truncated != wantTrunc || !bytes.Equal(live, want) {
				t.Errorf("kept %d bytes (truncated %v), live %d; want %d (truncated %v)", len(got), truncated, len(live), len(want), wantTrunc)
			}
			if ents, _ := os.ReadDir(sp.Path()); len(ents) != 0 {
				t.Errorf("the spool directory lists %d files; spool files have no name", len(ents))
			}
			if err := f.Close(); err != nil {
				t.Error(err)
			}
			if err := f.Close(); err != nil {
				t.Errorf("a second Close: %v", err)
			}
		})
	}
	if n := openFDs(t); n != fds {
		t.Errorf("%d fds open after the spool files were closed, %d before", n, fds)
	}
}

type writerFunc func(p []byte)

func (f writerFunc) Write(p []byte) (int, error) { f(p); return len(p), nil }

// TestCaptureSpoolLifecycle: SetLive replays spooled bytes too; Reset
// closes a spool file nobody took; a spool whose directory is gone leaves
// the output in memory; a spool file that fails a write gives its bytes
// back to memory, and nothing is lost.
func TestCaptureSpoolLifecycle(t *testing.T) {
	fds := openFDs(t)
	sp := newSpool(t)
	big := bytes.Repeat([]byte("x"), SpoolAt+10)

	c := New(4*SpoolAt, nil, nil)
	c.SetSpool(sp)
	c.Write(big)
	var live bytes.Buffer
	c.SetLive(&live, 4*SpoolAt)
	c.Write([]byte("yz"))
	if want := string(big) + "yz"; live.String() != want {
		t.Errorf("live got %d bytes, want %d", live.Len(), len(want))
	}
	if b, _ := c.Reset(); len(b) != 0 {
		t.Errorf("Reset of a spooled capture returned %d bytes", len(b))
	}
	c.Write(big)
	if f := c.File(); f != nil {
		t.Error("Reset kept the spool")
	}

	gone := newSpool(t)
	if err := os.Remove(gone.Path()); err != nil {
		t.Fatal(err)
	}
	c = New(4*SpoolAt, nil, nil)
	c.SetSpool(gone)
	c.Write(big)
	if b, truncated := c.Result(); !bytes.Equal(b, big) || truncated || c.File() != nil {
		t.Errorf("with no spool directory: %d bytes kept, truncated %v", len(b), truncated)
	}

	if n := openFDs(t); n != fds {
		t.Errorf("%d fds open at the end, %d before", n, fds)
	}
}
