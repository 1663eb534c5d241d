package output

import (
	"bytes"
	"strings"
	"testing"
)

func TestCapture(t *testing.T) {
	overs := 0
	var live bytes.Buffer
	c := New(5, nil, func() { overs++ })
	c.Write([]byte("abc"))
	c.SetLive(&live, 5) // replays what was kept before
	c.Write([]byte("defgh"))
	c.Write([]byte("ijk"))
	got, truncated := c.Result()
	if string(got) != "abcde" || !truncated || overs != 1 || live.String() != "abcde" {
		t.Errorf("kept %q truncated %v overs %d live %q", got, truncated, overs, live.String())
	}
	// Past the cap a Capture keeps taking (and dropping) bytes, so the
	// copy from the program's pipe reads to EOF and never blocks it.
	var m Marks
	if err := m.Copy(New(3, nil, nil), strings.NewReader(strings.Repeat("x", 100<<10))); err != nil {
		t.Errorf("copy past the cap: %v", err)
	}
	if b, _ := New(1, nil, nil).Result(); b == nil {
		t.Error("an empty result is nil")
	}
}

// TestCaptureHandsOver: the kept bytes are handed over, not copied, in a
// buffer no larger than the cap however they came (one byte at a time
// doubles it); Reset after Result still has them (a session's dead
// kernel), and then starts afresh.
func TestCaptureHandsOver(t *testing.T) {
	const max = 1000
	c := New(max, nil, nil)
	for range 3 * max {
		c.Write([]byte("<"))
	}
	got, truncated := c.Result()
	if len(got) != max || !truncated || cap(got) != max {
		t.Fatalf("kept %d bytes in a buffer of %d, truncated %v; want %d in %d, true", len(got), cap(got), truncated, max, max)
	}
	if again, truncated := c.Reset(); &again[0] != &got[0] || len(again) != max || !truncated {
		t.Errorf("Reset after Result: %d bytes, truncated %v, the same array: %v", len(again), truncated, &again[0] == &got[0])
	}
	c.Write([]byte("ab"))
	if b, truncated := c.Result(); string(b) != "ab" || truncated || string(got) != strings.Repeat("<", max) {
		t.Errorf("after Reset: kept %q, truncated %v; the first result now %.10q", b, truncated, got)
	}
}
