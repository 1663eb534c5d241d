package workspace

import "time"

// FileInfo describes one workspace entry, as the file operations on a live
// workspace (PutFile, OpenFile, RemoveFile, ListFiles) report it.
type FileInfo struct {
	Name    string    `json:"name"`  // workspace-relative path
	Type    string    `json:"type"`  // "file", "dir", "symlink" or "other"
	Size    int64     `json:"size"`  // in bytes; a symlink's is its target's length
	Mode    uint32    `json:"mode"`  // permission bits
	ModTime time.Time `json:"mtime"` // last modification
}
