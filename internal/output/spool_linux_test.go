package output

import (
	"bytes"
	"os"
	"syscall"
	"testing"

	"github.com/sandboxd/sandboxd/internal/spool"
)

// TestCaptureSpoolFills: a spool whose file system fills mid-run (a 2 MiB
// tmpfs, a full disk) gives its file up: what went to it is read back and
// the rest is kept in memory, nothing lost, no fd left.
func TestCaptureSpoolFills(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs to fill requires root")
	}
	full := t.TempDir()
	if err := syscall.Mount("tmpfs", full, "tmpfs", 0, "size=2m"); err != nil {
		t.Fatal(err)
	}
	defer syscall.Unmount(full, syscall.MNT_DETACH)
	fds := openFDs(t)
	small, err := spool.New(full)
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("x"), SpoolAt+10)
	c := New(4*SpoolAt, nil, nil)
	c.SetSpool(small)
	c.Write(big)
	c.Write(big)
	c.Write(big)
	c.Write([]byte("tail"))
	b, truncated := c.Result()
	if want := string(big) + string(big) + string(big) + "tail"; string(b) != want || truncated || c.File() != nil {
		t.Errorf("after the spool filled: %d bytes kept (want %d), truncated %v, file %v", len(b), len(want), truncated, c.File() != nil)
	}
	if n := openFDs(t); n != fds {
		t.Errorf("%d fds open at the end, %d before", n, fds)
	}
}
