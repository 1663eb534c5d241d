package isolate

import (
	"fmt"
	"os"
	"syscall"
	"testing"
)

// TestCloneHint: a clone that fails for want of file descriptors or
// memory says so, not that user namespaces may be off (a daemon with 1800
// idle sessions hit EMFILE and was told to check user namespaces).
func TestCloneHint(t *testing.T) {
	for _, c := range []struct {
		err  syscall.Errno
		hint bool
	}{
		{syscall.EPERM, true}, {syscall.EINVAL, true}, {syscall.ENOSPC, true},
		{syscall.EMFILE, false}, {syscall.ENFILE, false}, {syscall.EAGAIN, false}, {syscall.ENOMEM, false},
	} {
		err := fmt.Errorf("fork/exec: %w", &os.SyscallError{Syscall: "clone", Err: c.err})
		if got := cloneHint(err) != ""; got != c.hint {
			t.Errorf("%v: hint %v, want %v", c.err, got, c.hint)
		}
	}
}
