package wasm

import (
	"path/filepath"
	"testing"
)

// TestDefaultCacheDirIsAbsolute: the workers get the resolved cache
// directory; an empty one once put their cache in the working directory.
func TestDefaultCacheDirIsAbsolute(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	r, err := New(t.Context(), Config{Mode: ModeInProcess})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(t.Context())
	if !filepath.IsAbs(r.cfg.CacheDir) {
		t.Fatalf("cache dir %q is not absolute", r.cfg.CacheDir)
	}
}
