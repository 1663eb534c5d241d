package isolate

import (
	"slices"
	"testing"
)

func TestCleanup(t *testing.T) {
	tests := []struct {
		name    string
		release bool
		want    []string
	}{
		{"clean runs the undos last first", false, []string{"c", "b", "a"}},
		{"release keeps everything", true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ran []string
			undo := func(s string) func() { return func() { ran = append(ran, s) } }
			func() {
				cu := makeCleanup(undo("a"))
				defer cu.Clean()
				cu.Add(nil)
				cu.Add(undo("b"))
				cu.Add(undo("c"))
				if tt.release {
					cu.Release()
				}
			}()
			if !slices.Equal(ran, tt.want) {
				t.Fatalf("ran %q, want %q", ran, tt.want)
			}
		})
	}
	t.Run("clean twice runs once", func(t *testing.T) {
		n := 0
		cu := makeCleanup(func() { n++ })
		cu.Clean()
		cu.Clean()
		if n != 1 {
			t.Fatalf("undo ran %d times, want 1", n)
		}
	})
}
