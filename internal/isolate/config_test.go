package isolate

import (
	"errors"
	"testing"

	"github.com/sandboxd/sandboxd/internal/errdefs"
)

func TestCheckCgroupParent(t *testing.T) {
	for _, ok := range []string{"sandboxd", "system.slice/sandboxd", "sandboxd-test.1"} {
		if err := CheckCgroupParent(ok); err != nil {
			t.Errorf("CheckCgroupParent(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", "../etc", "a/../../b", "/sandboxd", "sandboxd/", "a//b", "a/./b"} {
		err := CheckCgroupParent(bad)
		if !errors.Is(err, ErrInvalidConfig) || !errdefs.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("CheckCgroupParent(%q) = %v, want ErrInvalidConfig", bad, err)
		}
	}
}
