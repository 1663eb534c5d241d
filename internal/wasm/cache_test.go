package wasm

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestTidyCache: past the bound, the least recently written files go
// first, files written since the compilation began go last, and what is
// left is readable by other uids.
func TestTidyCache(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "wazero-v1-amd64-linux")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	files := []struct {
		name string
		age  time.Duration
	}{{"old", 3 * time.Hour}, {"mid", 2 * time.Hour}, {"new", time.Hour}, {"fresh", 0}}
	for _, f := range files {
		p := filepath.Join(sub, f.name)
		if err := os.WriteFile(p, make([]byte, 1000), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, now.Add(-f.age), now.Add(-f.age)); err != nil {
			t.Fatal(err)
		}
	}
	n, err := tidyCache(dir, 2500, now.Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("evicted %d files, want 2", n)
	}
	for _, f := range files {
		st, err := os.Stat(filepath.Join(sub, f.name))
		gone := f.name == "old" || f.name == "mid"
		switch {
		case gone && err == nil:
			t.Errorf("%s was kept; the oldest go first", f.name)
		case !gone && err != nil:
			t.Errorf("%s: %v", f.name, err)
		case !gone && st.Mode().Perm() != 0o644:
			t.Errorf("%s has mode %v, want 0644 (the workers read it)", f.name, st.Mode().Perm())
		}
	}
	if st, err := os.Stat(sub); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("cache subdirectory: %v %v, want mode 0755", st.Mode(), err)
	}
	// A file written since the compilation began is what its run is about
	// to load: it goes after every older one.
	if _, err := tidyCache(dir, 1500, now.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(sub, "fresh")); err != nil {
		t.Errorf("the fresh file was evicted before an older one: %v", err)
	}
}
