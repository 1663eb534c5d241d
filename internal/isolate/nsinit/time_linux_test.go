package nsinit

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestOffsetFrom: the offset brings a clock to one second, with the
// nanoseconds in the range the kernel takes.
func TestOffsetFrom(t *testing.T) {
	for _, c := range []struct {
		now  unix.Timespec
		want string
	}{
		{unix.Timespec{Sec: 100, Nsec: 0}, "-99 0"},
		{unix.Timespec{Sec: 100, Nsec: 250_000_000}, "-100 750000000"},
		{unix.Timespec{Sec: 0, Nsec: 500_000_000}, "0 500000000"},
		{unix.Timespec{Sec: 53921, Nsec: 999_999_999}, "-53921 1"},
	} {
		if got := offsetFrom(c.now); got != c.want {
			t.Errorf("offsetFrom(%d.%09d) = %q, want %q", c.now.Sec, c.now.Nsec, got, c.want)
		}
	}
}
