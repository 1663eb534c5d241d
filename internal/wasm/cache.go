package wasm

import (
	"cmp"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// DefaultCacheMaxBytes bounds the compilation cache on disk unless
// Config.CacheMaxBytes says otherwise: the interpreters' code (about 60 MB
// for python.wasm) and room for many user modules.
const DefaultCacheMaxBytes = 1 << 30

// cacheEntry is one file of the compilation cache.
type cacheEntry struct {
	path  string
	size  int64
	mtime time.Time
}

// tidyCache runs after each compilation. It makes the cache readable by
// the workers (wazero creates its directories 0700 and its files 0600, and
// the workers are other uids, which must read but never write it), and
// evicts the least recently written files until the cache is within max
// bytes. Each distinct module leaves a file, so without the bound the
// cache would grow one upload at a time until the disk is full. Files
// written since `since` go last: they are what the run that
// compiled them is about to load.
func tidyCache(dir string, max int64, since time.Time) (evicted int, err error) {
	var files []cacheEntry
	var total int64
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.Chmod(path, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		if err := os.Chmod(path, 0o644); err != nil {
			return err
		}
		if strings.HasSuffix(path, ".tmp") && time.Since(info.ModTime()) < time.Hour {
			return nil // a write in progress (wazero renames it when done)
		}
		files = append(files, cacheEntry{path, info.Size(), info.ModTime()})
		total += info.Size()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("tidy the compilation cache: %w", err)
	}
	// Oldest first; files written since `since` last of all.
	slices.SortFunc(files, func(a, b cacheEntry) int { return a.mtime.Compare(b.mtime) })
	slices.SortStableFunc(files, func(a, b cacheEntry) int {
		return cmp.Compare(boolInt(!a.mtime.Before(since)), boolInt(!b.mtime.Before(since)))
	})
	for _, f := range files {
		if total <= max {
			break
		}
		if err := os.Remove(f.path); err != nil && !os.IsNotExist(err) {
			return evicted, fmt.Errorf("evict from the compilation cache: %w", err)
		}
		total -= f.size
		evicted++
	}
	return evicted, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
